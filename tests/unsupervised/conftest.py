"""Fixtures for the label-free distillation tests: digits configs, teachers, a tiny BuildContext."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from kdlab.config import Config, load_config
from kdlab.methods.base import BuildContext
from kdlab.models import Features, create_model

#: digits, resnet8, CPU, silent: the base of every run in these tests
DIGITS = [
    "data.name=digits",
    "data.batch_size=64",
    "data.eval_batch_size=512",
    "data.augment=crop",
    "data.crop_padding=1",
    "data.num_workers=0",
    "model.name=resnet8",
    "trainer.device=cpu",
    "trainer.progress=none",
    "trainer.seed=0",
    "optim.lr=0.05",
    "schedule.name=cosine",
]

#: label-free CoSS on top of DIGITS (the teacher is added by each test)
COSS = [
    "teacher.embedding_only=true",
    "distill.labels=false",
    "distill.head_hidden=32",
    "distill.terms=[{name: coss, weight: 1.0}]",
    "eval.knn_k=[10]",
]


def digits_config(*overrides: str) -> Config:
    return load_config(None, [*DIGITS, *overrides])


@pytest.fixture
def digits_cfg() -> Callable[..., Config]:
    """``digits_cfg(*overrides)``: a digits/resnet8 CPU config (importing conftest from tests is unreliable)."""
    return digits_config


@pytest.fixture
def coss_overrides() -> list[str]:
    return list(COSS)


def save_random_model(path: Path, name: str, seed: int = 0) -> Path:
    """An untrained zoo model for 1-channel digits, saved as a plain state_dict (a cheap 'teacher')."""
    torch.manual_seed(seed)
    torch.save(create_model(name, num_classes=10, in_chans=1).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def random_teacher(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides for an untrained resnet8 teacher (64-d embedding, the student's width)."""
    path = save_random_model(tmp_path_factory.mktemp("teachers") / "resnet8.pt", "resnet8", seed=1)
    return ["teacher.name=resnet8", f"teacher.checkpoint={path}"]


@pytest.fixture(scope="session")
def wide_teacher(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides for an untrained wrn_16_2 teacher (128-d: the resnet8 student needs a head)."""
    path = save_random_model(tmp_path_factory.mktemp("teachers") / "wrn_16_2.pt", "wrn_16_2", seed=2)
    return ["teacher.name=wrn_16_2", f"teacher.checkpoint={path}"]


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides pointing at a resnet8 teacher run folder trained briefly on the digits labels."""
    from kdlab.engine.trainer import Trainer

    out = tmp_path_factory.mktemp("trained") / "teacher"
    cfg = digits_config(f"trainer.out_dir={out}", "trainer.epochs=3", "trainer.seed=1")
    result = Trainer(cfg).fit()
    assert result.completed and result.best is not None and result.best > 80.0, result.best
    return [f"teacher.checkpoint={out}"]


def _features(batch: int, dim: int) -> Features:
    embedding = torch.randn(batch, dim)
    return Features(logits=embedding, embedding=embedding, stages=[], preact_stages=[])


@pytest.fixture
def make_ctx() -> Callable[..., BuildContext]:
    """A BuildContext with feature probes of the given embedding widths (no real networks)."""

    def make(student_dim: int, teacher_dim: int, head_hidden: int = 16, config: Config | None = None) -> BuildContext:
        return BuildContext(
            student=torch.nn.Identity(),
            teacher=torch.nn.Identity(),
            num_classes=10,
            train_size=100,
            image_size=8,
            in_chans=1,
            labels=False,
            seed=0,
            epochs=1,
            steps_per_epoch=1,
            head_hidden=head_hidden,
            config=config,
            student_probe=_features(2, student_dim),
            teacher_probe=_features(2, teacher_dim),
        )

    return make
