"""The FSP, AB and FT recipes (configs/cifar100/{fsp,ab,ft}/, label_noise/ft/): RepDistiller's settings and
published numbers, FSP only where the channels allow it, and each recipe's initialisation stage and main run
build and take a training step on a tiny synthetic batch."""

from __future__ import annotations

import copy
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Optional

import pytest
import torch

from kdlab.config import load_config
from kdlab.engine.teacher import FrozenTeacher
from kdlab.methods.build import build_distiller, prerequisites
from kdlab.methods.init_stage.stem import check_equal_channels, fsp_channels, make_tap
from kdlab.models import create_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "cifar100"
PAIRS = (
    "resnet56_resnet20", "resnet110_resnet32", "resnet32x4_resnet8x4", "wrn_40_2_wrn_16_2", "wrn_40_2_wrn_40_1",
    "vgg13_vgg8", "vgg13_MobileNetV2", "ResNet50_MobileNetV2", "resnet32x4_ShuffleV1", "resnet32x4_ShuffleV2",
    "wrn_40_2_ShuffleV1",
)
TEACHERS = ("resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13", "ResNet50")
#: RepDistiller README (the CRD paper's Tables 1 and 2); FSP has no number where its channels differ
PUBLISHED = {
    "ab": (69.47, 70.98, 73.17, 72.50, 72.38, 70.94, 66.06, 67.20, 73.55, 74.31, 73.34),
    "ft": (69.84, 72.37, 72.86, 73.25, 71.59, 70.58, 61.78, 60.99, 71.75, 72.50, 72.03),
    "fsp": (69.95, 71.89, 72.62, 72.91, None, 70.23, None, None, None, None, None),
}
FSP_PAIRS = tuple(p for p, top1 in zip(PAIRS, PUBLISHED["fsp"]) if top1 is not None)
LIGHT = {"MobileNetV2", "ShuffleV1", "ShuffleV2"}
RECIPES = sorted(p for m in PUBLISHED for p in (CONFIGS / m).glob("*.yaml"))


def split(pair: str) -> tuple[str, str]:
    teacher = next(t for t in TEACHERS if pair.startswith(t + "_"))
    return teacher, pair[len(teacher) + 1:]


def published(path: Path) -> float | None:
    found = re.search(r"Published[^:\n]*top-1[^:\n]*?:? ([0-9]+\.[0-9]+)", path.read_text())
    return float(found.group(1)) if found else None


def test_ab_and_ft_cover_every_pair_and_fsp_the_pairs_with_equal_channels():
    for method, pairs in (("ab", PAIRS), ("ft", PAIRS), ("fsp", FSP_PAIRS)):
        assert sorted(p.stem for p in (CONFIGS / method).glob("*.yaml")) == sorted(pairs), method


@lru_cache(maxsize=None)
def fsp_map_channels(arch: str) -> tuple[tuple[str, int], ...]:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=100)
    return tuple(fsp_channels(model, make_tap(model, "network"), 3, 32))


@pytest.mark.parametrize("pair", PAIRS)
def test_fsp_recipes_exist_exactly_where_repdistillers_channel_check_passes(pair: str):
    teacher, student = split(pair)
    student_maps, teacher_maps = list(fsp_map_channels(student)), list(fsp_map_channels(teacher))
    if pair in FSP_PAIRS:
        check_equal_channels(student_maps, teacher_maps, student, teacher)
        assert student_maps[0][0] == ("stage 0" if teacher == "vgg13" else "stem")  # RepDistiller's feat[:-1]
    else:
        with pytest.raises(ValueError, match="equal channels|one to one"):
            check_equal_channels(student_maps, teacher_maps, student, teacher)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipes_follow_repdistiller(path: Path):
    method, pair = path.parent.name, path.stem
    teacher, student = split(pair)
    cfg = load_config(path)
    assert (cfg.teacher.name, cfg.model.name) == (teacher, student)
    assert cfg.teacher.checkpoint == f"weights/cifar_teachers/{teacher}_vanilla/ckpt_epoch_240.pth"
    assert cfg.trainer.out_dir == f"runs/cifar100/{method}/{pair}"
    assert cfg.trainer.epochs == 240 and cfg.data.batch_size == 64 and cfg.schedule.milestones == [150, 180, 210]
    assert cfg.optim.lr == (0.01 if student in LIGHT else 0.05) and cfg.optim.weight_decay == 5e-4
    terms = {t["name"]: t for t in cfg.distill.terms}
    assert set(terms) == {"ce", method} and terms["ce"]["weight"] == 1.0
    term = terms[method]
    assert term["init_epochs"] == 30 and "init_lr" not in term  # RepDistiller's init_epochs and learning rate
    if method == "ft":
        assert (term["weight"], term["p1"], term["p2"], term["rate"]) == (200, 2, 1, 0.5)
    else:  # RepDistiller's main stage has no FSP / AB loss
        assert term["weight"] == 0
    if method == "ab":
        assert term["stages"] == ([1, 2, 3, 4] if pair == "vgg13_vgg8" else "all") and term["margin"] == 1.0
    assert published(path) == PUBLISHED[method][PAIRS.index(pair)]


@pytest.mark.parametrize("rate", (0, 10, 30, 50))
def test_ft_label_noise_recipes_are_the_ft_recipe_plus_the_noise(rate: int):
    path = CONFIGS / "label_noise" / "ft" / f"vgg13_vgg8_noise{rate}.yaml"
    cfg, base = load_config(path), load_config(CONFIGS / "ft" / "vgg13_vgg8.yaml")
    assert cfg.data.label_noise.rate == pytest.approx(rate / 100) and cfg.data.label_noise.seed == 0
    assert (cfg.model, cfg.teacher, cfg.distill.terms, cfg.optim) == (base.model, base.teacher, base.distill.terms,
                                                                      base.optim)
    assert cfg.trainer.out_dir == f"runs/cifar100/label_noise/ft/vgg13_vgg8_noise{rate}"
    assert published(path) is None


@lru_cache(maxsize=None)
def network(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(arch, num_classes=100)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stand-in teacher files: the stages' digests read their bytes; the networks below are built in memory."""
    root = tmp_path_factory.mktemp("weights")
    for arch in TEACHERS:
        (root / arch).mkdir()
        torch.save({"model": {}}, root / arch / "ckpt_epoch_240.pth")
    return root


def one_step(cfg, student: torch.nn.Module, teacher: Optional[torch.nn.Module], built: Optional[list] = None):
    """Build the run's Distiller (``built`` receives the student's weights as built) and take one step."""
    distiller = build_distiller(
        cfg, student, teacher, num_classes=100, train_size=32, image_size=16, in_chans=3, steps_per_epoch=8,
        device=torch.device("cpu"), extra={"train_targets": torch.arange(32) % 100},
    )
    if built is not None:
        built.append({k: v.clone() for k, v in distiller.student.state_dict().items()})
    distiller.train()
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 3, 16, 16, generator=g), "target": torch.randint(0, 100, (2,), generator=g),
             "index": torch.tensor([3, 17])}
    out = distiller(batch)
    assert math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    return distiller


#: ResNet50's deepest stage has 2048 channels: its paraphraser (RepDistiller's layout) has 132M parameters, too
#: slow to build here; the other FT recipes build the same modules
STEP_RECIPES = [p for p in RECIPES if (p.parent.name, p.stem) != ("ft", "ResNet50_MobileNetV2")]


@pytest.mark.parametrize("path", STEP_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_stage_and_main_run_build_and_take_a_step(path: Path, weights: Path):
    teacher_arch, student_arch = split(path.stem)
    cfg = load_config(path, ["data.name=synthetic", "data.synthetic_size=16", "data.synthetic_classes=100",
                             "data.batch_size=2", "trainer.device=cpu",
                             f"teacher.checkpoint={weights / teacher_arch / 'ckpt_epoch_240.pth'}"])
    (need,) = prerequisites(cfg)
    init = need.config
    # unfolded teachers: folding a copy of each large network would only cost time here
    teacher = FrozenTeacher(network(teacher_arch), fold_batchnorm=False)
    if init.model.frozen:  # FT: the paraphraser of the frozen teacher
        stage = one_step(init, FrozenTeacher(network(teacher_arch), fold_batchnorm=False), None)
    else:
        stage = one_step(init, copy.deepcopy(network(student_arch)), teacher)
    # a finished stage, as the trainer leaves it
    run_dir = need.produces.parent
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    method = {k: v for k, v in stage.state_dict().items() if not k.startswith("student.")}
    torch.save({"model": stage.student.state_dict(), "method": method}, run_dir / "checkpoints" / "last.pt")
    need.produces.write_text(json.dumps({"completed": True}))

    built: list = []
    one_step(cfg, copy.deepcopy(network(student_arch)), teacher, built)
    if not init.model.frozen:  # FSP / AB: the main run starts from the stage's student
        trained = stage.student.state_dict()
        assert all(torch.equal(v, trained[k]) for k, v in built[0].items())
