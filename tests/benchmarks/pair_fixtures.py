"""A generated suite with pairs on CIFAR-100-shaped synthetic data (100 classes, 32x32, a few hundred images).

Two pairs share their student (resnet14 -> resnet8, resnet20 -> resnet8); the teachers are
written by the fixture in RepDistiller's layout (``{"epoch", "model", "accuracy"}``, kdlab key
names) under ``weights/``, relative to the working directory as the shipped recipes name theirs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kdlab.models import create_model

PAIRS = ("resnet14_resnet8", "resnet20_resnet8")
TEACHERS = ("resnet14", "resnet20")

_BASE = """\
data:
  name: synthetic
  synthetic_train: 200
  synthetic_test: 100
  synthetic_classes: 100
  synthetic_size: 32
  batch_size: 50
  eval_batch_size: 100
  num_workers: 0
  cache_dir: {cache}
model:
  num_classes: 100
trainer:
  epochs: 1
  device: cpu
  num_threads: 1
optim: {{name: sgd, lr: 0.05}}
schedule: {{name: cosine}}
"""

_KD = "_base_: ../_base_.yaml\nmodel: {{name: resnet8}}\nteacher: {{name: {t}, checkpoint: weights/{t}.pth}}\n" \
      "distill: {{terms: [{{name: ce, weight: 0.1}}, {{name: kd, weight: 0.9, temperature: 4}}]}}\n"
_AT = "_base_: ../_base_.yaml\nmodel: {{name: resnet8}}\nteacher: {{name: {t}, checkpoint: weights/{t}.pth}}\n" \
      "distill: {{terms: [{{name: ce, weight: 1.0}}, {{name: at, weight: 1000}}]}}\n"
_STUDENT = "_base_: ../_base_.yaml\nmodel: {name: resnet8}\ndistill: {terms: [{name: ce, weight: 1.0}]}\n"

MANIFEST = """\
name: pairs
title: "synthetic CIFAR-100-shaped suite with pairs"
seeds: 2
jobs: 1
baseline: student
pairs:
  - {teacher: resnet14, student: resnet8}
  - {teacher: resnet20, student: resnet8}
teacher: {evaluate_pretrained: true}
methods:
  - {name: student, config: "student/{student}.yaml"}
  - {name: kd, config: "kd/{pair}.yaml", teacher_cache: true}
  - {name: at, config: "at/{pair}.yaml"}
  - {name: kd-slow, config: "kd/{pair}.yaml", overrides: ["optim.lr=0.01", "description=slow kd {pair}"], baseline: kd}
mini:
  pairs: [resnet20_resnet8]
  methods: [student, kd]
published:
  source: "made up for the test"
  tables:
    - source: "table A"
      epoch: final
      top1:
        resnet14_resnet8: {teacher: 1.0, student: 1.5, kd: 99.0}
        resnet20_resnet8: {kd: 98.0}
    - source: "table B"
      top1:
        resnet14_resnet8: {at: 97.0}
"""


def save_repdistiller_teacher(path: Path, arch: str, seed: int = 0) -> Path:
    """A randomly initialised 100-class kdlab model saved as RepDistiller saves its teachers."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=100)
    torch.save({"epoch": 240, "model": model.state_dict(), "accuracy": 70.0}, path)
    return path


def make_pair_suite(root: Path, teachers: bool = True) -> Path:
    """The suite folder below ``root`` (run it with ``root`` as the working directory); the teachers in root/weights."""
    (root / "weights").mkdir(exist_ok=True)
    if teachers:
        for i, arch in enumerate(TEACHERS):
            save_repdistiller_teacher(root / "weights" / f"{arch}.pth", arch, seed=i)
    suite = root / "suite"
    for folder in ("kd", "at", "student"):
        (suite / folder).mkdir(parents=True)
    (suite / "_base_.yaml").write_text(_BASE.format(cache=root / "decoded"))
    (suite / "student" / "resnet8.yaml").write_text(_STUDENT)
    for pair, teacher in zip(PAIRS, TEACHERS):
        (suite / "kd" / f"{pair}.yaml").write_text(_KD.format(t=teacher))
    (suite / "at" / f"{PAIRS[0]}.yaml").write_text(_AT.format(t=TEACHERS[0]))  # no at recipe for the second pair
    (suite / "suite.yaml").write_text(MANIFEST)
    (suite / "README.md").write_text("# Pair suite\n\nA test fixture.\n")
    return suite
