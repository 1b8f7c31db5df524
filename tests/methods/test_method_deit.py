"""The ``deit`` term: a distilled DeiT's class head learns from the labels, its distillation head from the teacher
(hard or soft), evaluation averages both heads; tiny CPU training runs (CNN -> DeiT, ViT -> DeiT), the errors, and
the DeiT recipes (configs/imagenet/deit/, configs/cifar100/deit/)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm", reason="timm is an optional dependency (in the test extra)")

from kdlab.cache.outputs import required_outputs  # noqa: E402
from kdlab.config import ConfigError, load_config  # noqa: E402
from kdlab.engine.teacher import FrozenTeacher, TeacherSet  # noqa: E402
from kdlab.engine.trainer import Trainer  # noqa: E402
from kdlab.losses import deit_loss_parts  # noqa: E402
from kdlab.methods.build import build_distiller  # noqa: E402
from kdlab.models import create_model  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLASSES, SIZE = 4, 16
#: a 2-block distilled DeiT on 16 px images: 4x4 patch tokens of width 32
DEIT = ("timm:deit_tiny_distilled_patch16_224",
        {"img_size": SIZE, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2})
VIT = ("timm:vit_tiny_patch16_224", {"img_size": SIZE, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2})
TINY = [
    "data.name=synthetic", "data.synthetic_train=8", "data.synthetic_test=4", f"data.synthetic_classes={CLASSES}",
    f"data.synthetic_size={SIZE}", "data.batch_size=4", "data.eval_batch_size=4", "data.augment=none",
    "data.num_workers=0", "trainer.progress=none", "trainer.device=cpu", "trainer.epochs=1", "trainer.num_threads=1",
    "optim.lr=0.01",
]


def deit_student(classes: int = CLASSES) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(DEIT[0], num_classes=classes, **DEIT[1])


def cnn_teacher(classes: int = CLASSES) -> FrozenTeacher:
    torch.manual_seed(1)
    return FrozenTeacher(create_model("resnet8", num_classes=classes))


def build(terms: list[dict], student: torch.nn.Module | None = None, teacher: torch.nn.Module | None = None):
    cfg = load_config(None, [f"distill.terms={json.dumps(terms)}"])
    return build_distiller(
        cfg, student if student is not None else deit_student(), teacher if teacher is not None else cnn_teacher(),
        num_classes=CLASSES, train_size=8, image_size=SIZE, in_chans=3, steps_per_epoch=2, device=torch.device("cpu"),
    )


def batch(n: int = 4, size: int = SIZE, classes: int = CLASSES, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 3, size, size, generator=g), "target": torch.arange(n) % classes,
            "index": torch.arange(n)}


def heads(student: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class and distillation heads of timm's own model on its final tokens (no dropout in these models)."""
    net = student.timm_model
    final = net.forward_features(images)
    return net.head(final[:, 0]), net.head_dist(final[:, 1])


@pytest.mark.parametrize("distillation", ["hard", "soft"])
def test_the_term_reads_both_heads_apart_and_matches_deits_loss(distillation: str) -> None:
    extra = {"temperature": 3.0} if distillation == "soft" else {}
    distiller = build([{"name": "deit", "distillation": distillation, **extra}])
    distiller.train()
    data = batch()
    out = distiller(data)
    student = distiller.student
    cls, dist = heads(student, data["image"])
    with torch.no_grad():
        teacher = distiller.teacher(data["image"])
    parts = deit_loss_parts(cls, dist, teacher, data["target"], distillation, 3.0 if extra else 1.0, 0.1)
    torch.testing.assert_close(out.terms["deit/ce"], parts["ce"].detach())
    torch.testing.assert_close(out.terms["deit/distillation"], parts["distillation"].detach())
    torch.testing.assert_close(out.terms["deit"], (0.5 * parts["ce"] + 0.5 * parts["distillation"]).detach())
    torch.testing.assert_close(out.logits, cls, msg="in training the logits are the class head's")
    assert not torch.allclose(cls, dist)


def test_evaluation_averages_the_two_heads_as_deit() -> None:
    distiller = build([{"name": "deit"}])
    student = distiller.student.eval()
    images = batch()["image"]
    with torch.no_grad():
        cls, dist = heads(student, images)
        torch.testing.assert_close(student(images), (cls + dist) / 2)
        features = student.forward_all(images)
    torch.testing.assert_close(features.logits, (cls + dist) / 2)
    assert features.distillation_logits is None


def test_the_distillation_part_trains_the_distillation_head_and_the_ce_part_the_class_head() -> None:
    distiller = build([{"name": "deit", "alpha": 1.0}])
    distiller.train()
    distiller(batch()).loss.backward()
    net = distiller.student.timm_model
    assert net.head.weight.grad is None or not net.head.weight.grad.any()
    assert net.head_dist.weight.grad.abs().sum() > 0
    ce_only = build([{"name": "deit", "alpha": 0.0}])
    ce_only.train()
    ce_only(batch()).loss.backward()
    net = ce_only.student.timm_model
    assert net.head.weight.grad.abs().sum() > 0
    assert net.head_dist.weight.grad is None or not net.head_dist.weight.grad.any()


def test_the_teacher_is_asked_for_its_logits_only_and_a_cache_can_feed_it() -> None:
    distiller = build([{"name": "deit"}])
    assert distiller._student_full and not distiller._teacher_full
    assert required_outputs(dict(distiller.terms)) == {"logits": ["deit"]}


def test_deit_reads_the_mean_of_several_teachers() -> None:
    cfg = load_config(None, [
        "teachers={a: {name: resnet8, checkpoint: a.pt}, b: {name: resnet8, checkpoint: b.pt}}",
        "distill.terms=[{name: deit, teacher: mean}]",
    ])
    torch.manual_seed(5)
    teachers = TeacherSet({"a": cnn_teacher(), "b": FrozenTeacher(create_model("resnet8", num_classes=CLASSES))},
                          {"a": 0.5, "b": 0.5})
    distiller = build_distiller(cfg, deit_student(), teachers, num_classes=CLASSES, train_size=8, image_size=SIZE,
                                in_chans=3, steps_per_epoch=2, device=torch.device("cpu"))
    distiller.train()
    data = batch()
    out = distiller(data)
    _, dist = heads(distiller.student, data["image"])
    with torch.no_grad():
        mean = 0.5 * teachers["a"](data["image"]) + 0.5 * teachers["b"](data["image"])
    torch.testing.assert_close(out.terms["deit/distillation"], F.cross_entropy(dist, mean.argmax(1)).detach())


@pytest.mark.parametrize(
    "student, terms, message",
    [
        (VIT, [{"name": "deit"}], r"distill\.terms\[0\] \(deit\): deit: the student timm:vit_tiny_patch16_224 has no "
                                  r"distillation token \(its prefix tokens are \['cls'\]\)"),
        (("resnet8", {}), [{"name": "deit"}], r"the student CifarResNet has no distillation token \(it has no prefix"),
        (DEIT, [{"name": "deit", "temperature": 2.0}], r"temperature=2\.0 applies to distillation: soft only"),
        (DEIT, [{"name": "deit", "distillation": "medium"}], r"distillation='medium' must be one of hard, soft"),
        (DEIT, [{"name": "deit", "alpha": 2}], r"alpha=2 must be a number in \[0, 1\]"),
        (DEIT, [{"name": "deit", "distillation": "soft", "soft_normalization": "mean"}], r"soft_normalization"),
    ],
)
def test_errors_name_what_is_wrong(student, terms, message: str) -> None:
    torch.manual_seed(0)
    network = create_model(student[0], num_classes=CLASSES, **student[1])
    with pytest.raises(ConfigError, match=message) as err:
        build(terms, student=network)
    assert "\n" not in str(err.value)


def _teacher_file(root: Path, name: str, options: dict) -> Path:
    torch.manual_seed(3)
    path = root / f"{name.replace(':', '_')}.pth"
    torch.save({"model": create_model(name, num_classes=CLASSES, **options).state_dict()}, path)
    return path


@pytest.mark.parametrize("teacher", [("resnet8", {}), VIT], ids=["cnn->deit", "vit->deit"])
def test_a_tiny_training_run_trains_the_student_and_leaves_the_teacher(tmp_path: Path, teacher) -> None:
    checkpoint = _teacher_file(tmp_path, *teacher)
    cfg = load_config(None, [
        *TINY, f"model.name={DEIT[0]}", f"model.kwargs={json.dumps(DEIT[1])}", f"teacher.name={teacher[0]}",
        f"teacher.kwargs={json.dumps(teacher[1])}", f"teacher.checkpoint={checkpoint}",
        f"trainer.out_dir={tmp_path / 'run'}", "distill.terms=[{name: deit, distillation: soft, temperature: 3.0}]",
    ])
    trainer = Trainer(cfg)
    frozen = {k: v.clone() for k, v in trainer.teacher.model.state_dict().items()}
    start = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    result = trainer.fit()
    assert result.completed
    row = result.history[-1]
    assert math.isfinite(row["val_top1"]) and {"train_deit/ce", "train_deit/distillation"} <= set(row), sorted(row)
    assert all(torch.equal(v, trainer.teacher.model.state_dict()[k]) for k, v in frozen.items())
    after = trainer.student.state_dict()
    assert not torch.equal(start["model.head_dist.weight"], after["model.head_dist.weight"])
    assert not torch.equal(start["model.head.weight"], after["model.head.weight"])


# ------------------------------------------------------------------------------------------ the recipes
DEIT_RECIPES = {
    "imagenet/deit/regnety16gf_deit_tiny_distilled.yaml": "timm:deit_tiny_distilled_patch16_224",
    "imagenet/deit/regnety16gf_deit_small_distilled.yaml": "timm:deit_small_distilled_patch16_224",
    "cifar100/deit/resnet32x4_deit_tiny_distilled.yaml": "timm:deit_tiny_distilled_patch16_224",
}


@pytest.mark.parametrize("recipe", sorted(DEIT_RECIPES))
def test_the_recipes_follow_deits_settings(recipe: str) -> None:
    cfg = load_config(CONFIGS / recipe)
    assert cfg.model.name == DEIT_RECIPES[recipe]
    assert cfg.distill.terms == [{"name": "deit", "distillation": "hard", "alpha": 0.5}]
    assert cfg.optim.name == "adamw" and cfg.optim.weight_decay == 0.05 and cfg.schedule.name == "cosine"
    assert cfg.model.kwargs["drop_path_rate"] == 0.1 and cfg.trainer.epochs == 300
    assert cfg.trainer.out_dir == f"runs/{Path(recipe).with_suffix('').as_posix()}"
    if recipe.startswith("imagenet"):  # DeiT: lr 5e-4 x batch / 512, 5 warm-up epochs, min lr 1e-5, 224 px
        assert cfg.data.batch_size == 1024 and cfg.optim.lr == pytest.approx(5e-4 * 1024 / 512)
        assert cfg.schedule.warmup_epochs == 5 and cfg.schedule.min_lr == 1e-5 and cfg.data.image_size == 224
        assert cfg.teacher.name == "tv:regnet_y_16gf"
        assert cfg.teacher.checkpoint == "weights/torchvision/regnet_y_16gf-3e4a00f9.pth"
    else:
        assert cfg.data.name == "cifar100" and cfg.model.kwargs["img_size"] == 32
        assert cfg.model.kwargs["patch_size"] == 4
        assert cfg.teacher.checkpoint == "weights/cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth"


@pytest.mark.parametrize("recipe", sorted(DEIT_RECIPES))
def test_each_recipe_builds_and_runs_a_training_step(recipe: str) -> None:
    imagenet = recipe.startswith("imagenet")
    size, classes = (64, 1000) if imagenet else (32, 100)
    cfg = load_config(CONFIGS / recipe, ["data.name=synthetic", f"data.synthetic_size={size}", "trainer.device=cpu",
                                         f"data.synthetic_classes={classes}", "data.batch_size=2"])
    torch.manual_seed(0)
    kwargs = {**cfg.model.kwargs, "img_size": size}  # the ImageNet students at 64 px to stay fast
    if imagenet:
        kwargs["depth"] = 2
    student = create_model(cfg.model.name, num_classes=classes, **kwargs)
    teacher = FrozenTeacher(create_model(cfg.teacher.name, num_classes=classes, **cfg.teacher.kwargs))
    distiller = build_distiller(cfg, student, teacher, num_classes=classes, train_size=8, image_size=size, in_chans=3,
                                steps_per_epoch=4, device=torch.device("cpu"))
    distiller.train()
    data = batch(2, size, classes)
    before = copy.deepcopy(student.timm_model.head_dist.weight.detach())
    out = distiller(data)
    assert math.isfinite(float(out.loss.detach())) and {"deit", "deit/ce", "deit/distillation"} <= set(out.terms)
    optimizer = torch.optim.AdamW([p for p in distiller.parameters() if p.requires_grad], lr=cfg.optim.lr)
    out.loss.backward()
    optimizer.step()
    assert not torch.equal(before, student.timm_model.head_dist.weight)
