"""Writing a generated benchmark suite: a tiny ImageFolder zip, a tiny option-A teacher, the configs.

Everything lives in tmp, so the suite's logic is tested without ../shared.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kdlab.models import create_model

CLASSES = ("ant", "bee", "cow")
IMAGE_SIZE = 16
TRAIN_PER_CLASS = 8
TEST_PER_CLASS = 4
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SUITE = REPO_ROOT / "benchmarks" / "cifar10_cpu"


def write_imagefolder_zip(path: Path) -> Path:
    """train/<class>/*.png and test/<class>/*.png, each class a different mean colour (learnable)."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
            for label, name in enumerate(CLASSES):
                for i in range(count):
                    pixels = rng.integers(0, 80, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
                    pixels[..., label] += 150
                    image = Image.fromarray(pixels)
                    member = f"{split}/{name}/{i:03d}.png"
                    with archive.open(member, "w") as handle:
                        image.save(handle, format="PNG")
    return path


def save_third_party_teacher(path: Path, arch: str = "resnet8", num_classes: int = len(CLASSES)) -> Path:
    """An option-A CIFAR ResNet in the third-party (akamaster) format: module. prefix, ``linear`` classifier."""
    torch.manual_seed(0)
    model = create_model(arch, num_classes=num_classes, shortcut="A")
    state = {f"module.{k.replace('fc.', 'linear.', 1) if k.startswith('fc.') else k}": v
             for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "best_prec1": 0.0}, path)
    return path


_BASE = """\
data:
  name: imagefolder
  root: data/tiny.zip            # relative: resolved against the working directory
  batch_size: 8
  eval_batch_size: 32
  num_workers: 0
  augment: crop_flip
  crop_padding: 2
  cache_dir: {cache}
model:
  name: resnet8
trainer:
  epochs: 2
  eval_every: 1
  num_threads: 1
  device: cpu
optim: {{name: sgd, lr: 0.05}}
schedule: {{name: cosine}}
"""

_FILES = {
    "_teacher_.yaml": "_base_: _base_.yaml\nteacher: {name: resnet8, kwargs: {shortcut: A}, checkpoint: weights/teacher.th}\n",
    "teacher.yaml": (
        "_base_: _base_.yaml\nmodel: {name: resnet8, kwargs: {shortcut: A}, checkpoint: weights/teacher.th}\n"
        "trainer: {epochs: 1}\noptim: {lr: 0.01}\n"
    ),
    "student.yaml": "_base_: _base_.yaml\ndistill: {terms: [{name: ce, weight: 1.0}]}\n",
    "kd.yaml": "_base_: _teacher_.yaml\ndistill: {terms: [{name: ce, weight: 0.1}, {name: kd, weight: 0.9, temperature: 4}]}\n",
    "at.yaml": "_base_: _teacher_.yaml\ndistill: {terms: [{name: ce, weight: 1.0}, {name: at, weight: 1000}]}\n",
    "coss.yaml": (
        "_base_: _teacher_.yaml\ndistill: {labels: false, terms: [{name: coss, weight: 1.0}]}\n"
        "eval: {knn: true, knn_k: [3], linear_probe: true, probe_epochs: 5}\n"
    ),
}

_MANIFEST = """\
name: tiny
title: "tiny generated suite"
seeds: 2
jobs: 1
baseline: student
teacher: {config: teacher.yaml, finetune: true, evaluate_pretrained: true}
methods:
  - {name: student, config: student.yaml}
  - {name: kd, config: kd.yaml, teacher_cache: true}
  - {name: coss, config: coss.yaml, teacher_cache: true}
  - {name: at, config: at.yaml}
mini:
  seeds: 1
  methods: [student, kd]
  overrides: [trainer.epochs=1]
published:
  source: "made up for the test"
  top1: {student: 1.0, kd: 2.0, at: 3.0}
  order: [[student, kd], [kd, at]]
"""


def make_tiny_suite(root: Path) -> Path:
    """Write the tiny zip, the tiny teacher and the suite folder below ``root``; returns the suite folder.

    The configs name the zip and the weights relative to ``root``: run the suite with ``root``
    as the working directory, as the shipped suite runs from the repository root.
    """
    (root / "data").mkdir()
    (root / "weights").mkdir()
    write_imagefolder_zip(root / "data" / "tiny.zip")
    save_third_party_teacher(root / "weights" / "teacher.th")
    suite = root / "suite"
    suite.mkdir()
    (suite / "_base_.yaml").write_text(_BASE.format(cache=root / "decoded"))
    for name, text in _FILES.items():
        (suite / name).write_text(text)
    (suite / "suite.yaml").write_text(_MANIFEST)
    (suite / "README.md").write_text("# Tiny suite\n\n## Why\n\nA test fixture.\n")
    return suite
