"""The ``ofa`` term (OFA-KD): student stages projected into the logit space by learned branches and distilled
there with the OFA loss; tiny CPU training runs CNN -> ViT and ViT -> CNN, the branch shapes the official code
builds, the errors, and the recipes (configs/cifar100/ofa/)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is an optional dependency (in the test extra)")

from kdlab.cache.outputs import required_outputs  # noqa: E402
from kdlab.config import ConfigError, load_config  # noqa: E402
from kdlab.engine.teacher import FrozenTeacher  # noqa: E402
from kdlab.engine.trainer import Trainer  # noqa: E402
from kdlab.losses import ofa_loss  # noqa: E402
from kdlab.methods.build import build_distiller  # noqa: E402
from kdlab.methods.modules.ofa_branches import ConvBranch, PatchMerging, SepConv, TokenBranch  # noqa: E402
from kdlab.models import create_model  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLASSES, SIZE = 4, 16
#: a 4-block ViT on 16 px images: four stages of 4x4 patch tokens of width 32
VIT = ("timm:vit_tiny_patch16_224", {"img_size": SIZE, "patch_size": 4, "depth": 4, "embed_dim": 32, "num_heads": 2})
CNN = ("resnet8", {})
TINY = [
    "data.name=synthetic", "data.synthetic_train=8", "data.synthetic_test=4", f"data.synthetic_classes={CLASSES}",
    f"data.synthetic_size={SIZE}", "data.batch_size=4", "data.eval_batch_size=4", "data.augment=none",
    "data.num_workers=0", "trainer.progress=none", "trainer.device=cpu", "trainer.epochs=1", "trainer.num_threads=1",
    "optim.lr=0.01",
]


def network(spec: tuple[str, dict], seed: int = 0, size: int = SIZE) -> torch.nn.Module:
    torch.manual_seed(seed)
    kwargs = {**spec[1], "img_size": size} if "img_size" in spec[1] else spec[1]
    return create_model(spec[0], num_classes=CLASSES, **kwargs)


def build(terms: list[dict], student: torch.nn.Module, teacher: torch.nn.Module, size: int = SIZE):
    cfg = load_config(None, [f"distill.terms={json.dumps(terms)}"])
    return build_distiller(cfg, student, FrozenTeacher(teacher), num_classes=CLASSES, train_size=8, image_size=size,
                           in_chans=3, steps_per_epoch=2, device=torch.device("cpu"))


def batch(n: int = 4, size: int = SIZE, classes: int = CLASSES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(n, 3, size, size, generator=g), "target": torch.arange(n) % classes,
            "index": torch.arange(n)}


@pytest.mark.parametrize("student, teacher", [(VIT, CNN), (CNN, VIT)], ids=["cnn->vit", "vit->cnn"])
def test_the_term_is_the_ofa_loss_of_the_logits_plus_every_branch(student, teacher) -> None:
    distiller = build([{"name": "ofa", "eps": 1.5, "stage_weight": 0.5, "logits_weight": 2.0}], network(student),
                      network(teacher, 1))
    distiller.train()
    data = batch()
    out = distiller(data)
    term = distiller.terms["ofa"]
    features = distiller.student.forward_all(data["image"])
    with torch.no_grad():
        teacher_logits = distiller.teacher(data["image"])
    logits = ofa_loss(features.logits, teacher_logits, data["target"], 1.5)
    stages = [ofa_loss(b(features.stages[i]), teacher_logits, data["target"], 1.5)
              for i, b in zip(term.stage_indices, term.branches)]
    torch.testing.assert_close(out.terms["ofa/logits"], logits.detach())
    for i, value in zip(term.stage_indices, stages):
        torch.testing.assert_close(out.terms[f"ofa/stage{i}"], value.detach())
    torch.testing.assert_close(out.terms["ofa"], (2.0 * logits + 0.5 * sum(stages)).detach())
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in term.branches[0].parameters() if p.dim() > 1)


def test_a_cnn_students_branches_halve_down_to_its_deepest_stage() -> None:
    """resnet8 at 16 px: stages 16x16 (16 ch), 8x8 (32), 4x4 (64): 2, 1 and 0 halvings (official 4 - stage)."""
    distiller = build([{"name": "ofa"}], network(CNN), network(VIT, 1))
    branches = distiller.terms["ofa"].branches
    assert all(isinstance(b, ConvBranch) for b in branches)
    assert [b.halvings for b in branches] == [2, 1, 0]
    first = [m for m in branches[0].body if isinstance(m, SepConv)]
    convs = [m for m in first[-1].body if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].out_channels == 64  # max(student width 64, teacher width 32), as the official projector
    assert branches[2].body[0].kernel_size == (1, 1)
    assert branches[0](torch.randn(2, 16, 16, 16)).shape == (2, CLASSES)


def test_a_vit_students_branches_merge_patches_to_about_7x7_and_run_fewer_blocks_deeper() -> None:
    """A 56 px ViT with 4 px patches: 14x14 tokens, one 2x2 merge to 7x7; blocks 3, 2, 1, 1 (official max(4 - s, 1))."""
    distiller = build([{"name": "ofa"}], network(VIT, size=56), network(CNN, 1), size=56)
    branches = distiller.terms["ofa"].branches
    assert all(isinstance(b, TokenBranch) for b in branches)
    assert [b.merges for b in branches] == [1, 1, 1, 1] and [b.depth for b in branches] == [3, 2, 1, 1]
    assert isinstance(branches[0].mergers[0], PatchMerging)
    assert branches[0](torch.randn(2, 32, 14, 14)).shape == (2, CLASSES)


def test_stages_and_eps_per_branch() -> None:
    distiller = build([{"name": "ofa", "stages": [-1], "eps": [1.2, 1.8]}], network(CNN), network(VIT, 1))
    term = distiller.terms["ofa"]
    assert term.stage_indices == [2] and term.eps == [1.2, 1.8]
    out = distiller(batch())
    assert set(out.terms) == {"ofa", "ofa/logits", "ofa/stage2"}


def test_the_teacher_is_read_for_its_logits_only_so_a_cache_can_feed_it() -> None:
    distiller = build([{"name": "ce"}, {"name": "ofa"}], network(CNN), network(VIT, 1))
    assert required_outputs(dict(distiller.terms)) == {"logits": ["ofa"]}


@pytest.mark.parametrize(
    "term, student, message",
    [
        ({"name": "ofa", "eps": [1.0, 1.0]}, CNN, r"eps=\[1\.0, 1\.0\] must give one value per stage branch plus one "
                                                   r"for the logits \(4\)"),
        ({"name": "ofa", "eps": 0}, CNN, r"eps=0 must be a number > 0"),
        ({"name": "ofa", "stages": [5]}, CNN, r"stages\[0\]=5 is out of range: the student has 3 stages"),
        ({"name": "ofa", "stages": [0, -3]}, CNN, r"names a student stage twice"),
        ({"name": "ofa"}, ("timm:vit_tiny_patch16_224", {**VIT[1], "img_size": 60}),
         r"PatchMerging: a 15x15 token grid cannot be merged 2x2"),
    ],
)
def test_errors_name_the_parameter(term: dict, student, message: str) -> None:
    size = student[1].get("img_size", SIZE)
    with pytest.raises(ConfigError, match=message) as err:
        build([term], network(student, size=size), network(CNN, 1), size=size)
    assert "\n" not in str(err.value)


def _teacher_file(root: Path, spec: tuple[str, dict]) -> Path:
    path = root / f"{spec[0].replace(':', '_')}.pth"
    torch.save({"model": network(spec, 3).state_dict()}, path)
    return path


@pytest.mark.parametrize("student, teacher", [(VIT, CNN), (CNN, VIT)], ids=["cnn->vit", "vit->cnn"])
def test_a_tiny_training_run_trains_student_and_branches_and_leaves_the_teacher(tmp_path: Path, student, teacher):
    cfg = load_config(None, [
        *TINY, f"model.name={student[0]}", f"model.kwargs={json.dumps(student[1])}", f"teacher.name={teacher[0]}",
        f"teacher.kwargs={json.dumps(teacher[1])}", f"teacher.checkpoint={_teacher_file(tmp_path, teacher)}",
        f"trainer.out_dir={tmp_path / 'run'}", "distill.terms=[{name: ce, label_smoothing: 0.1}, {name: ofa}]",
    ])
    trainer = Trainer(cfg)
    frozen = {k: v.clone() for k, v in trainer.teacher.model.state_dict().items()}
    branches = {k: v.clone() for k, v in trainer.method.terms["ofa"].state_dict().items()}
    result = trainer.fit()
    assert result.completed
    row = result.history[-1]
    assert math.isfinite(row["val_top1"]) and {"train_ofa/logits", "train_ofa/stage0"} <= set(row), sorted(row)
    assert all(torch.equal(v, trainer.teacher.model.state_dict()[k]) for k, v in frozen.items())
    after = trainer.method.terms["ofa"].state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in branches.items()), "the branches did not train"


# ------------------------------------------------------------------------------------------ the recipes
OFA_RECIPES = sorted((CONFIGS / "cifar100" / "ofa").glob("*.yaml"))


def test_the_ofa_recipes_are_the_heterogeneous_pairs_and_the_vit_teacher() -> None:
    names = {p.stem for p in OFA_RECIPES}
    assert names == {"vit_tiny_teacher", "vit_tiny_resnet8x4", "resnet32x4_deit_tiny"}
    teacher = load_config(CONFIGS / "cifar100" / "ofa" / "vit_tiny_teacher.yaml")
    pair = load_config(CONFIGS / "cifar100" / "ofa" / "vit_tiny_resnet8x4.yaml")
    assert pair.teacher.checkpoint == teacher.trainer.out_dir  # the teacher's run folder
    assert pair.teacher.name == teacher.model.name
    assert {k: teacher.model.kwargs[k] for k in pair.teacher.kwargs} == pair.teacher.kwargs


@pytest.mark.parametrize("path", OFA_RECIPES, ids=lambda p: p.stem)
def test_each_recipe_follows_ofas_loss_and_runs_a_training_step(path: Path) -> None:
    cfg = load_config(path, ["data.name=synthetic", "data.synthetic_size=32", "data.synthetic_classes=100",
                             "data.batch_size=2", "trainer.device=cpu"])
    terms = {t["name"]: t for t in cfg.distill.terms}
    assert terms["ce"] == {"name": "ce", "label_smoothing": 0.1}  # weight 1, as every OFA weight
    assert cfg.trainer.out_dir == f"runs/cifar100/ofa/{path.stem}"
    vit_student = cfg.model.name.startswith("timm:")
    if vit_student:  # OFA-KD's CIFAR ViT settings (configs/cifar/vit_mlp.yaml)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 5e-4, 0.05)
        assert (cfg.schedule.name, cfg.schedule.warmup_epochs, cfg.schedule.min_lr) == ("cosine", 20, 1e-5)
        assert cfg.trainer.epochs == 300 and cfg.model.kwargs["patch_size"] == 4
    else:  # RepDistiller's protocol
        assert cfg.optim.name == "sgd" and cfg.trainer.epochs == 240 and cfg.schedule.milestones == [150, 180, 210]
    if path.stem == "vit_tiny_teacher":
        assert cfg.teacher.name is None and set(terms) == {"ce"}
        return
    assert terms["ofa"] == {"name": "ofa", "eps": 1.0}
    torch.manual_seed(0)
    student = create_model(cfg.model.name, num_classes=100, **cfg.model.kwargs)
    teacher = FrozenTeacher(create_model(cfg.teacher.name, num_classes=100, **cfg.teacher.kwargs))
    distiller = build_distiller(cfg, student, teacher, num_classes=100, train_size=8, image_size=32, in_chans=3,
                                steps_per_epoch=4, device=torch.device("cpu"))
    distiller.train()
    out = distiller(batch(2, 32, 100))
    assert math.isfinite(float(out.loss.detach())) and {"ce", "ofa", "ofa/logits"} <= set(out.terms)
    out.loss.backward()
