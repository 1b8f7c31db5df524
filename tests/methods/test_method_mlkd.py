"""The mlkd and ce_strong terms: MLKD's loss on the weak/strong views, the official total, CTKD and LS on it,
clear errors, a few steps through the real Trainer with exact resume, and the teacher cache of both views."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kdlab.cache import TeacherCache, build_cache_from_config
from kdlab.config import ConfigError, load_config
from kdlab.engine.builders import with_views
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.teacher import FrozenTeacher
from kdlab.engine.trainer import Trainer, read_metrics
from kdlab.losses import mlkd_loss, mlkd_loss_parts
from kdlab.methods.build import build_distiller
from kdlab.methods.modules.learnable_temperature import LearnableTemperature
from kdlab.models import create_model
from method_helpers import build, make_batch

OFFICIAL = [{"name": "ce", "weight": 0.1}, {"name": "ce_strong", "weight": 0.1}, {"name": "mlkd", "weight": 0.9}]


def two_view_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    batch = make_batch(n, seed)
    strong = make_batch(n, seed + 1)["image"]
    batch["image"] = torch.stack([batch["image"], strong], dim=1)  # (B, 2, C, H, W): weak, strong
    return batch


def _logits(model, batch):
    with torch.no_grad():
        flat = model(batch["image"].flatten(0, 1))
    return flat[0::2], flat[1::2]


def test_the_recipe_total_is_the_official_one():
    distiller = build(OFFICIAL)
    distiller.eval()  # BatchNorm statistics fixed, so the student's logits below are the ones the terms saw
    batch = two_view_batch()
    out = distiller(batch)
    student_weak, student_strong = _logits(distiller.student, batch)
    teacher_weak, teacher_strong = _logits(distiller.teacher, batch)
    targets = batch["target"]
    expected = 0.1 * (F.cross_entropy(student_weak, targets) + F.cross_entropy(student_strong, targets)) + 0.9 * mlkd_loss(
        student_weak, teacher_weak, student_strong, teacher_strong, temperature=4.0
    )
    torch.testing.assert_close(out.loss, expected)
    parts = mlkd_loss_parts(student_weak, teacher_weak, student_strong, teacher_strong)
    for part in ("kd_weak", "kd_strong", "cc", "bc"):
        torch.testing.assert_close(out.terms[f"mlkd/{part}"], parts[part])
    torch.testing.assert_close(out.logits, student_weak)  # training accuracy on the weak view, as the official code


def test_parameters_reach_the_loss():
    distiller = build([{"name": "mlkd", "temperature": 2, "extra_temperatures": [3, 7], "logit_standardization": True}])
    distiller.eval()
    batch = two_view_batch()
    student_weak, student_strong = _logits(distiller.student, batch)
    teacher_weak, teacher_strong = _logits(distiller.teacher, batch)
    expected = mlkd_loss(student_weak, teacher_weak, student_strong, teacher_strong, 2.0, (3.0, 7.0), True)
    torch.testing.assert_close(distiller(batch).terms["mlkd"], expected)


def test_a_learnable_temperature_replaces_t_logs_itself_and_trains():
    distiller = build([{"name": "mlkd", "temperature": "learnable", "ctkd_epochs": 5}])
    term = distiller.terms["mlkd"]
    assert isinstance(term.learnable_temperature, LearnableTemperature) and term.learnable_temperature.loops == 5
    assert term.extra_temperatures == (3.0, 5.0, 2.0, 6.0)  # fixed
    out = distiller(two_view_batch(), epoch=3)
    assert float(out.terms["mlkd/temperature"]) == pytest.approx(1 + 20 / (1 + torch.e ** -1), rel=1e-5)
    out.loss.backward()
    grad = term.learnable_temperature.theta.grad
    assert grad is not None and float(grad.abs()) > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"extra_temperatures": [3, -1]}, r"distill.terms\[0\] \(mlkd\): extra_temperatures=-1 must be a number > 0"),
        ({"extra_temperatures": 3}, r"extra_temperatures=3 must be a list of numbers"),
        ({"ctkd_epochs": 5}, r"ctkd_epochs=5 applies only with temperature: learnable"),
        ({"temperature": "hot"}, r"temperature='hot' must be a number > 0 or 'learnable'"),
        ({"logit_standardization": 1}, r"logit_standardization=1 must be true or false"),
    ],
)
def test_bad_parameters_are_config_errors_naming_the_term(params, message):
    with pytest.raises(ConfigError, match=message):
        build([{"name": "mlkd", **params}])


def test_both_terms_need_two_views_per_image():
    for terms in (OFFICIAL[2:], OFFICIAL[1:2]):
        distiller = build(terms)
        with pytest.raises(ValueError, match=r"needs MLKD's two views per image \(data.views=weak_strong\), got 1"):
            distiller(make_batch(8))


def test_the_builder_sets_the_views_and_refuses_others():
    cfg = load_config(None, [f"distill.terms={json.dumps(OFFICIAL)}"])
    assert cfg.data.views == "single" and with_views(cfg).data.views == "weak_strong"
    with pytest.raises(ConfigError, match=r"data.views='rotate4' but the loss terms need 'weak_strong'"):
        with_views(load_config(None, [f"distill.terms={json.dumps(OFFICIAL)}", "data.views=rotate4"]))
    with pytest.raises(ConfigError, match="incompatible data views"):
        with_views(load_config(None, ["distill.terms=[{name: mlkd}, {name: sskd}]"]))


TINY = [
    "data.name=synthetic",
    "data.synthetic_train=48",
    "data.synthetic_test=16",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    "data.batch_size=16",
    "data.crop_padding=1",
    "data.num_workers=0",
    "trainer.progress=none",
    "trainer.device=cpu",
    "schedule.name=cosine",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlkd") / "teacher"
    return Trainer(load_config(None, [*TINY, f"trainer.out_dir={out}", "model.name=resnet8", "trainer.epochs=1"])).fit().out_dir


def mlkd_config(teacher: Path, out: Path, *extra: str):
    terms = "distill.terms=[{name: ce, weight: 0.1}, {name: ce_strong, weight: 0.1}, {name: mlkd, weight: 0.9}]"
    return load_config(None, [*TINY, f"trainer.out_dir={out}", "model.name=resnet8", f"teacher.checkpoint={teacher}",
                              "trainer.epochs=2", terms, *extra])


def _same_checkpoints(a: Path, b: Path) -> None:
    first, second = load_checkpoint_file(a / "checkpoints" / "last.pt"), load_checkpoint_file(b / "checkpoints" / "last.pt")
    for part in ("model", "method"):
        assert first[part].keys() == second[part].keys()
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), f"{part}.{key}"


def test_trains_through_the_trainer_and_resumes_exactly(teacher: Path, tmp_path: Path):
    full = Trainer(mlkd_config(teacher, tmp_path / "full")).fit()
    assert full.completed
    rows = read_metrics(full.out_dir)
    for key in ("train_ce", "train_ce_strong", "train_mlkd", "train_mlkd/kd_weak", "train_mlkd/kd_strong",
                "train_mlkd/cc", "train_mlkd/bc", "val_top1"):
        assert key in rows[-1], key
    # 48 samples / batch 16 = 3 steps per epoch: stop inside epoch 1, then resume
    cut = Trainer(mlkd_config(teacher, tmp_path / "cut", "trainer.stop_after_steps=4")).fit()
    assert not cut.completed
    resumed = Trainer(mlkd_config(teacher, tmp_path / "cut")).fit(resume="auto")
    assert resumed.completed
    _same_checkpoints(full.out_dir, resumed.out_dir)


@pytest.mark.parametrize("pipeline", ["fast", "standard"])
def test_a_float32_teacher_cache_of_both_views_trains_like_the_live_teacher(teacher: Path, tmp_path: Path, pipeline):
    cfg = mlkd_config(teacher, tmp_path / "cached", f"data.pipeline={pipeline}")
    cache, built = build_cache_from_config(cfg, tmp_path / "cache", store_dtype="float32", progress=False)
    assert built and TeacherCache(tmp_path / "cache").views == 2 and cache.key["augmentation"]["views"] == "weak_strong"
    # the fast path stores every parameter of both views; the standard path each sample's seed, which fixes them
    strong = {"ra_op", "ra_value", "cutout_size", "cutout_x", "cutout_y"} if pipeline == "fast" else {"seed"}
    assert strong <= set(cache.aug_dtypes)
    live = Trainer(mlkd_config(teacher, tmp_path / "live", f"data.pipeline={pipeline}")).fit()
    cached = Trainer(dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, teacher_cache=str(tmp_path / "cache")))).fit()
    assert live.completed and cached.completed
    _same_checkpoints(live.out_dir, cached.out_dir)
    a, b = read_metrics(live.out_dir)[-1], read_metrics(cached.out_dir)[-1]
    assert all(a[k] == b[k] for k in ("train_mlkd", "train_mlkd/kd_strong", "train_ce_strong", "val_top1"))


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "cifar100"
PAIRS = {"ResNet50_MobileNetV2", "resnet110_resnet32", "resnet32x4_ShuffleV1", "resnet32x4_ShuffleV2",
         "resnet32x4_resnet8x4", "resnet56_resnet20", "vgg13_MobileNetV2", "vgg13_vgg8", "wrn_40_2_ShuffleV1",
         "wrn_40_2_wrn_16_2", "wrn_40_2_wrn_40_1"}
#: (epochs, lr) of the official configs: MLKD's configs/cifar100/ours/, the LS code's configs/cifar100/mlkd/
OFFICIAL_SCHEDULES = {
    "mlkd": {"ResNet50_MobileNetV2": (480, 0.01), "resnet32x4_ShuffleV1": (960, 0.01),
             "resnet32x4_ShuffleV2": (960, 0.01), "vgg13_MobileNetV2": (480, 0.01), "wrn_40_2_ShuffleV1": (480, 0.01)},
    "mlkd_ls": {"ResNet50_MobileNetV2": (480, 0.01), "resnet32x4_ShuffleV1": (960, 0.01),
                "resnet32x4_ShuffleV2": (960, 0.01), "vgg13_MobileNetV2": (480, 0.01), "vgg13_vgg8": (480, 0.01),
                "wrn_40_2_ShuffleV1": (480, 0.01)},
}
RECIPES = sorted(p for method in ("mlkd", "mlkd_ls") for p in (CONFIGS / method).glob("*.yaml"))


def test_there_is_a_recipe_for_every_standard_pair():
    for method in ("mlkd", "mlkd_ls"):
        assert {p.stem for p in (CONFIGS / method).glob("*.yaml")} == PAIRS, method


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipes_follow_the_official_settings_and_run_a_step(path: Path):
    method, pair = path.parent.name, path.stem
    cfg = load_config(path)
    assert cfg.data.name == "cifar100" and cfg.data.augment == "crop_flip" and cfg.data.crop_padding == 4
    assert cfg.data.batch_size == 64 and cfg.schedule.milestones == [150, 180, 210] and cfg.schedule.gamma == 0.1
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 5e-4
    default = (240, 0.025) if method == "mlkd" else (480, 0.025)
    assert (cfg.trainer.epochs, cfg.optim.lr) == OFFICIAL_SCHEDULES[method].get(pair, default)
    assert cfg.trainer.out_dir == f"runs/cifar100/{method}/{pair}"
    assert f"{cfg.teacher.name}_{cfg.model.name}" == pair
    assert cfg.teacher.checkpoint == f"weights/cifar_teachers/{cfg.teacher.name}_vanilla/ckpt_epoch_240.pth"
    mlkd = {"name": "mlkd", "weight": 0.9, "temperature": 4} if method == "mlkd" else {
        "name": "mlkd", "weight": 9.0, "temperature": 2, "logit_standardization": True}
    assert cfg.distill.terms == [{"name": "ce", "weight": 0.1}, {"name": "ce_strong", "weight": 0.1}, mlkd]
    assert with_views(cfg).data.views == "weak_strong"
    header = path.read_text().split("_base_")[0]
    assert ("Published top-1" in header) and (("ShuffleV1" in pair) == ("not" in header.split("Published top-1")[1][:12]))
    if method == "mlkd_ls" and pair != "resnet32x4_resnet8x4":
        return  # the same networks as the mlkd recipe of the pair: one step with the LS term is enough
    # one step of the real networks (random weights) on two 16-px images x 2 views
    cfg = load_config(path, ["data.name=synthetic", "data.synthetic_size=16", "data.synthetic_classes=100",
                             "trainer.device=cpu"])
    torch.manual_seed(0)
    distiller = build_distiller(
        with_views(cfg), create_model(cfg.model.name, num_classes=100),
        FrozenTeacher(create_model(cfg.teacher.name, num_classes=100)), num_classes=100, train_size=32,
        image_size=16, in_chans=3, steps_per_epoch=8, device=torch.device("cpu"),
    )
    distiller.train()
    batch = {"image": torch.randn(2, 2, 3, 16, 16), "target": torch.tensor([3, 17]), "index": torch.tensor([0, 1])}
    out = distiller(batch)
    assert torch.isfinite(out.loss) and {"ce", "ce_strong", "mlkd", "mlkd/cc"} <= set(out.terms)
    out.loss.backward()
