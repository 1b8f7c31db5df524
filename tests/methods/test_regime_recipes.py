"""The SSKD paper's few-shot and noisy-label recipes and CoSS's label-free CIFAR-100 recipes: each is its
method's standard recipe plus the regime's data key, and carries the published value the issue lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdlab.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "cifar100"
METHODS = ("kd", "at", "crd", "sskd")

#: Xu et al. 2020, Fig. 4 (read from the figure): per method, the values at 25/50/75/100% and 0/10/30/50% noise
FEW_SHOT = {
    "kd": (61.73, 69.40, 71.84, 73.61), "crd": (61.87, 69.78, 72.58, 74.27), "sskd": (69.54, 73.38, 74.18, 75.35),
}
NOISE = {
    "kd": (73.60, 73.44, 73.22, 73.48), "crd": (74.29, 73.79, 71.75, 70.73), "sskd": (75.34, 74.88, 74.98, 75.03),
}
SHARES = (25, 50, 75, 100)
RATES = (0, 10, 30, 50)


def _published(path: Path) -> float | None:
    found = re.search(r"Published[^:\n]*top-1[^:\n]*: ([0-9]+\.[0-9]+)", path.read_text())
    return float(found.group(1)) if found else None


def _same_apart_from_data(regime, base, changed: str) -> None:
    assert regime.model == base.model and regime.teacher == base.teacher
    assert regime.distill.terms == base.distill.terms
    assert regime.optim == base.optim and regime.schedule == base.schedule
    assert regime.trainer.epochs == base.trainer.epochs
    for key in ("name", "root", "batch_size", "augment", "subset"):
        assert getattr(regime.data, key) == getattr(base.data, key), key
    untouched = "label_noise" if changed == "per_class" else "per_class"
    assert getattr(regime.data, untouched) == getattr(base.data, untouched)


@pytest.mark.parametrize("method", METHODS)
def test_few_shot_recipes_keep_a_share_of_every_class(method: str):
    base = load_config(CONFIGS / method / "vgg13_vgg8.yaml")
    for index, share in enumerate(SHARES):
        path = CONFIGS / "few_shot" / method / f"vgg13_vgg8_{share}pc.yaml"
        cfg = load_config(path)
        assert cfg.data.per_class == pytest.approx(share / 100)
        _same_apart_from_data(cfg, base, "per_class")
        assert cfg.trainer.out_dir == f"runs/cifar100/few_shot/{method}/vgg13_vgg8_{share}pc"
        expected = FEW_SHOT[method][index] if method in FEW_SHOT else None
        assert _published(path) == expected, path.name


@pytest.mark.parametrize("method", METHODS)
def test_label_noise_recipes_fix_the_noise_by_its_seed(method: str):
    base = load_config(CONFIGS / method / "vgg13_vgg8.yaml")
    for index, rate in enumerate(RATES):
        path = CONFIGS / "label_noise" / method / f"vgg13_vgg8_noise{rate}.yaml"
        cfg = load_config(path)
        assert cfg.data.label_noise.rate == pytest.approx(rate / 100) and cfg.data.label_noise.seed == 0
        _same_apart_from_data(cfg, base, "label_noise")
        assert cfg.trainer.out_dir == f"runs/cifar100/label_noise/{method}/vgg13_vgg8_noise{rate}"
        expected = NOISE[method][index] if method in NOISE else None
        assert _published(path) == expected, path.name


@pytest.mark.parametrize(
    "pair, published",
    [("resnet56_resnet20", 71.11), ("vgg13_vgg8", 74.58), ("resnet32x4_resnet8x4", 73.90)],
)
def test_coss_cifar100_recipes_are_label_free_from_the_released_teachers(pair: str, published: float):
    path = CONFIGS / "coss" / f"{pair}.yaml"
    cfg = load_config(path)
    teacher, student = pair.split("_", 1)
    assert (cfg.teacher.name, cfg.model.name) == (teacher, student)
    assert cfg.teacher.checkpoint == f"weights/cifar_teachers/{teacher}_vanilla/ckpt_epoch_240.pth"
    assert [term["name"] for term in cfg.distill.terms] == ["coss"] and cfg.distill.labels is False
    assert _published(path) == published
