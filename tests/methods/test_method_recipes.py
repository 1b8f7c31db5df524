"""Every shipped recipe (configs/cifar100/**, configs/imagenet/**) loads, says what the papers
say, builds both networks and runs one training step on a tiny synthetic batch."""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from kdlab.config import Config, load_config
from kdlab.engine.teacher import FrozenTeacher
from kdlab.methods.build import build_distiller
from kdlab.models import create_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CIFAR_METHODS = (
    "kd", "fitnet", "at", "sp", "rkd", "pkt", "crd", "dkd", "ckd", "dist", "kd_ls", "dkd_ls",
    "vid", "cc", "nst",
    "reviewkd", "ofd", "kd_ctkd",
)
IMAGENET_METHODS = ("kd", "dkd", "ckd", "dist", "nkd", "reviewkd", "ofd", "kd_ctkd")
#: recipe folders whose term has another name (the logit-standardised / CTKD variants of kd / dkd)
TERM_OF_METHOD = {"kd_ls": "kd", "dkd_ls": "dkd", "kd_ctkd": "kd"}
#: ImageNet methods with a recipe for resnet34 -> resnet18 only
IMAGENET_R18_ONLY = {"dist", "nkd", "reviewkd", "ofd", "kd_ctkd"}
CIFAR_PAIRS = {
    ("resnet32x4", "resnet8x4"), ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
    ("resnet110", "resnet32"), ("vgg13", "vgg8"), ("vgg13", "MobileNetV2"), ("ResNet50", "MobileNetV2"),
    ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"), ("wrn_40_2", "ShuffleV1"),
}
LIGHT_STUDENTS = {"MobileNetV2", "ShuffleV1", "ShuffleV2"}

CIFAR_RECIPES = sorted(p for m in CIFAR_METHODS for p in (CONFIGS / "cifar100" / m).glob("*.yaml"))
TEACHER_RECIPES = sorted((CONFIGS / "cifar100" / "teacher").glob("*.yaml"))
IMAGENET_RECIPES = sorted(p for m in IMAGENET_METHODS for p in (CONFIGS / "imagenet" / m).glob("*.yaml"))
ALL_RECIPES = CIFAR_RECIPES + TEACHER_RECIPES + IMAGENET_RECIPES


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def test_every_method_has_a_recipe_for_every_pair():
    for method in CIFAR_METHODS:
        found = {tuple(_pair(load_config(p))) for p in (CONFIGS / "cifar100" / method).glob("*.yaml")}
        assert found == CIFAR_PAIRS, method
    teachers = {load_config(p).model.name for p in TEACHER_RECIPES}
    assert teachers == {"resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13", "ResNet50"}
    for method in IMAGENET_METHODS:
        found = {tuple(_pair(load_config(p))) for p in (CONFIGS / "imagenet" / method).glob("*.yaml")}
        expected = {("tv:resnet34", "tv:resnet18"), ("tv:resnet50", "MobileNetV1")}
        if method in IMAGENET_R18_ONLY:
            expected = {("tv:resnet34", "tv:resnet18")}
        assert found == expected, method


def _pair(cfg: Config) -> tuple[str, str]:
    return cfg.teacher.name, cfg.model.name


def _terms(cfg: Config) -> dict[str, dict]:
    return {t["name"]: t for t in cfg.distill.terms}


@pytest.mark.parametrize("path", CIFAR_RECIPES + TEACHER_RECIPES, ids=_id)
def test_cifar_recipes_follow_their_protocol(path: Path):
    cfg = load_config(path)
    method = path.parent.name
    assert cfg.data.name == "cifar100" and cfg.data.root == "data/cifar100"
    assert cfg.data.augment == "crop_flip" and cfg.data.crop_padding == 4
    assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 5e-4
    assert cfg.trainer.out_dir == f"runs/cifar100/{method}/{path.stem}"
    light = cfg.model.name in LIGHT_STUDENTS
    assert cfg.optim.lr == (0.01 if light else 0.05)
    if method == "ckd":
        assert cfg.trainer.epochs == 480 and cfg.schedule.name == "cosine"
        small_batch = cfg.model.name in {"ShuffleV1", "MobileNetV2"} or path.stem == "wrn_40_2_wrn_40_1"
        assert cfg.data.batch_size == (32 if small_batch else 64)
    else:
        assert cfg.trainer.epochs == 240 and cfg.data.batch_size == 64
        assert cfg.schedule.name == "step" and cfg.schedule.milestones == [150, 180, 210]
        assert cfg.schedule.gamma == 0.1
    if method == "teacher":
        assert cfg.teacher.name is None and _terms(cfg) == {"ce": {"name": "ce", "weight": 1.0}}
        return
    teacher, student = _pair(cfg)
    assert path.stem == f"{teacher}_{student}"
    assert cfg.teacher.checkpoint == f"weights/cifar_teachers/{teacher}_vanilla/ckpt_epoch_240.pth"
    terms = _terms(cfg)
    term = TERM_OF_METHOD.get(method, method)
    assert set(terms) == {"ce", term}
    expected = {"kd": 0.9, "fitnet": 100, "at": 1000, "sp": 3000, "rkd": 1, "pkt": 30000, "crd": 0.8, "dkd": 1,
                "dist": 2, "kd_ls": 9, "dkd_ls": 1, "vid": 1, "cc": 0.02, "nst": 50, "ofd": 0.001,
                "kd_ctkd": 0.9}
    if method == "reviewkd":  # the official script's weights; 1.0 (mdistiller's default) where it has none
        expected["reviewkd"] = {"resnet56_resnet20": 0.6, "resnet110_resnet32": 1.0, "resnet32x4_ShuffleV2": 8.0,
                                "vgg13_vgg8": 1.0, "vgg13_MobileNetV2": 1.0, "ResNet50_MobileNetV2": 1.0,
                                }.get(path.stem, 5.0)
        assert terms["reviewkd"]["warmup"] == 20
        assert not terms["reviewkd"]["student_preact"] and terms["reviewkd"]["teacher_preact"]
    if method in ("reviewkd", "ofd"):  # VGG's first block is not distilled (the official feature lists)
        assert terms[method]["stages"] == ([1, 2, 3, 4] if path.stem == "vgg13_vgg8" else "all")
    assert terms[term].get("logit_standardization", False) == method.endswith("_ls")
    if method == "dist":
        assert terms["dist"]["temperature"] == 4 and terms["dist"]["beta"] == terms["dist"]["gamma"] == 1
    if method in ("kd_ls", "dkd_ls"):
        assert terms[term]["temperature"] == 2
    if method == "kd_ctkd":  # the official CIFAR-100 script: -r 0.1 -a 0.9, decay_loops 10 (the default)
        assert terms["kd"]["temperature"] == "learnable" and "ctkd_epochs" not in terms["kd"]
    if method == "dkd_ls":  # the pair's DKD alpha and beta times 9, DKD's warm-up
        dkd = _terms(load_config(CONFIGS / "cifar100" / "dkd" / path.name))["dkd"]
        assert terms["dkd"]["alpha"] == 9 * dkd["alpha"] and terms["dkd"]["beta"] == 9 * dkd["beta"]
        assert terms["dkd"]["warmup"] == dkd["warmup"]
    if method == "ckd":
        expected["ckd"] = {"resnet56_resnet20": 10, "resnet110_resnet32": 10, "wrn_40_2_wrn_40_1": 50,
                           "vgg13_MobileNetV2": 50}.get(path.stem, 100)
        assert terms["ckd"].get("temperature") == (2 if expected["ckd"] == 50 else 1)
    assert terms[term]["weight"] == expected[method]
    assert terms["ce"]["weight"] == (0.1 if method in ("kd", "kd_ls", "kd_ctkd") else 1.0)


@pytest.mark.parametrize("path", IMAGENET_RECIPES, ids=_id)
def test_imagenet_recipes_follow_their_protocol(path: Path):
    cfg = load_config(path)
    method = path.parent.name
    assert cfg.data.name == "imagefolder" and cfg.data.augment == "random_resized_crop"
    assert cfg.data.image_size == 224 and cfg.data.batch_size == 512
    assert cfg.optim.lr == 0.2 and cfg.optim.weight_decay == 1e-4
    if method == "ckd":
        assert cfg.trainer.epochs == 200 and cfg.schedule.name == "cosine"
        assert _terms(cfg)["ckd"]["weight"] == 10
    else:
        assert cfg.trainer.epochs == 100 and cfg.schedule.milestones == [30, 60, 90]
    if method == "dist":  # official: CE 1 + DIST 2, beta = gamma = 1, T = 1
        assert _terms(cfg) == {"ce": {"name": "ce", "weight": 1.0}, "dist": {
            "name": "dist", "weight": 2.0, "beta": 1.0, "gamma": 1.0, "temperature": 1}}
    if method == "nkd":  # official: CE 1 + NKD, T = 1, gamma = 1.5
        assert _terms(cfg) == {"ce": {"name": "ce", "weight": 1.0}, "nkd": {
            "name": "nkd", "weight": 1.0, "temperature": 1, "gamma": 1.5}}
    if method == "reviewkd":  # official: CE 1 + ReviewKD 1, pre-ReLU student features, no warm-up
        assert _terms(cfg) == {"ce": {"name": "ce", "weight": 1.0}, "reviewkd": {
            "name": "reviewkd", "weight": 1.0, "student_preact": True, "teacher_preact": True, "warmup": 0}}
    if method == "kd_ctkd":  # official: CE 1 + KD 1, learned temperature, decay_loops 5
        assert _terms(cfg) == {"ce": {"name": "ce", "weight": 1.0}, "kd": {
            "name": "kd", "weight": 1.0, "temperature": "learnable", "ctkd_epochs": 5}}
    if method == "ofd":  # official: CE 1 + OFD 1e-4
        assert _terms(cfg) == {"ce": {"name": "ce", "weight": 1.0}, "ofd": {
            "name": "ofd", "weight": 0.0001, "stages": "all"}}
    assert cfg.teacher.checkpoint.startswith("weights/torchvision/") and cfg.teacher.checkpoint.endswith(".pth")


@lru_cache(maxsize=None)
def _student(name: str, classes: int) -> torch.nn.Module:
    """A pristine student network, built once per architecture; each test trains a copy."""
    torch.manual_seed(0)
    return create_model(name, num_classes=classes)


@lru_cache(maxsize=None)
def _teacher(name: str, classes: int) -> FrozenTeacher:
    """A frozen teacher, built once per architecture and shared (it must never change)."""
    torch.manual_seed(1)
    return FrozenTeacher(create_model(name, num_classes=classes))


@pytest.mark.parametrize("path", ALL_RECIPES, ids=_id)
def test_recipe_builds_and_runs_one_training_step(path: Path):
    imagenet = path.parts[-3] == "imagenet"
    size, classes = (64, 1000) if imagenet else (16, 100)
    cfg = load_config(
        path,
        [
            "data.name=synthetic",
            f"data.synthetic_size={size}",
            f"data.synthetic_classes={classes}",
            "data.batch_size=2",
            "trainer.device=cpu",
        ],
    )
    # Checkpoints are not there (teachers are trained / downloaded by the user): random weights.
    student = copy.deepcopy(_student(cfg.model.name, classes))
    teacher = _teacher(cfg.teacher.name, classes) if cfg.teacher.name else None
    teacher_state = None if teacher is None else {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = build_distiller(
        cfg, student, teacher, num_classes=classes, train_size=32, image_size=size, in_chans=3,
        steps_per_epoch=8, device=torch.device("cpu"), extra={"train_targets": torch.arange(32) % classes},
    )
    distiller.train()
    g = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randn(2, 3, size, size, generator=g),
        "target": torch.randint(0, classes, (2,), generator=g),
        "index": torch.tensor([3, 17]),
    }
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=cfg.optim.lr)
    out = distiller(batch, epoch=0, progress=0.0)
    assert math.isfinite(float(out.loss.detach()))
    assert {t.get("key", t["name"]) for t in cfg.distill.terms} <= set(out.terms)
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    if teacher is not None:  # the shared teacher is never changed by a step
        after = teacher.state_dict()
        assert all(torch.equal(value, after[key]) for key, value in teacher_state.items())


MULTI_TEACHER_RECIPES = sorted((CONFIGS / "cifar100" / "multi_teacher").glob("*.yaml"))


@pytest.mark.parametrize("path", MULTI_TEACHER_RECIPES, ids=_id)
def test_multi_teacher_recipes_follow_the_protocol_and_run_one_step(path: Path):
    """teachers: recipes: the standard protocol, the released teachers, and a step on a TeacherSet."""
    from kdlab.config.teacher_source import teacher_weights
    from kdlab.engine.teacher import TeacherSet

    cfg = load_config(path)
    assert cfg.data.name == "cifar100" and cfg.trainer.epochs == 240 and cfg.data.batch_size == 64
    assert cfg.optim.lr == (0.01 if cfg.model.name in LIGHT_STUDENTS else 0.05)
    assert cfg.trainer.out_dir == f"runs/cifar100/multi_teacher/{path.stem}"
    assert cfg.teacher.name is None and len(cfg.teachers) >= 2
    for key, entry in cfg.teachers.items():
        assert entry.checkpoint == f"weights/cifar_teachers/{entry.name}_vanilla/ckpt_epoch_240.pth", key
    assert path.stem == "_".join([*(e.name for e in cfg.teachers.values()), cfg.model.name])
    cfg = load_config(path, ["data.name=synthetic", "data.synthetic_size=16", "data.synthetic_classes=100",
                             "data.batch_size=2", "trainer.device=cpu"])
    teachers = TeacherSet({key: _teacher(e.name, 100) for key, e in cfg.teachers.items()}, teacher_weights(cfg))
    state = {k: v.clone() for k, v in teachers.state_dict().items()}
    distiller = build_distiller(
        cfg, copy.deepcopy(_student(cfg.model.name, 100)), teachers, num_classes=100, train_size=32, image_size=16,
        in_chans=3, steps_per_epoch=8, device=torch.device("cpu"),
    )
    distiller.train()
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 3, 16, 16, generator=g), "target": torch.randint(0, 100, (2,), generator=g),
             "index": torch.tensor([3, 17])}
    out = distiller(batch)
    assert math.isfinite(float(out.loss.detach())) and {t.get("key", t["name"]) for t in cfg.distill.terms} <= set(out.terms)
    out.loss.backward()
    assert all(torch.equal(v, teachers.state_dict()[k]) for k, v in state.items())
