"""SSKD reads its teacher's logits and embeddings of all 4 rotated views from a teacher cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kdlab.cache import TeacherCache, build_cache_from_config
from kdlab.engine.trainer import Trainer, read_metrics

from sskd_testkit import model_state, same_tensors, sskd_config, teacher_config

HEAD = ("head_epochs: 2", "head_lr: 0.1", "head_milestones: []")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Trainer(teacher_config(tmp_path_factory.mktemp("sskd_cache") / "teacher")).fit().out_dir


def with_cache(cfg, cache: Path):
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, teacher_cache=str(cache)))


def test_the_cache_holds_one_row_per_rotated_view(teacher: Path, tmp_path: Path):
    cfg = sskd_config(teacher, tmp_path / "unused", *HEAD)
    cache, built = build_cache_from_config(cfg, tmp_path / "cache", epochs=1, progress=False)
    assert built and TeacherCache(tmp_path / "cache").views == 4
    assert set(cache.layout.fields) == {"logits", "embedding"}


def test_a_float32_cache_trains_sskd_bit_for_bit_like_the_live_teacher(teacher: Path, tmp_path: Path):
    live = Trainer(sskd_config(teacher, tmp_path / "live", *HEAD)).fit()
    cfg = sskd_config(teacher, tmp_path / "cached", *HEAD)
    build_cache_from_config(cfg, tmp_path / "cache", store_dtype="float32", progress=False)
    cached = Trainer(with_cache(cfg, tmp_path / "cache")).fit()
    assert live.completed and cached.completed
    assert same_tensors(
        model_state(live.out_dir / "checkpoints" / "last.pt"), model_state(cached.out_dir / "checkpoints" / "last.pt")
    )
    a, b = read_metrics(live.out_dir)[-1], read_metrics(cached.out_dir)[-1]
    assert all(a[k] == b[k] for k in ("train_sskd", "train_sskd/ss", "train_sskd/tf", "val_top1"))


def test_a_cache_built_on_first_use_gives_the_losses_of_training_live(teacher: Path, tmp_path: Path):
    """The default fp16 cache: the same losses within fp16 rounding of the teacher outputs."""
    live = Trainer(sskd_config(teacher, tmp_path / "live", *HEAD)).fit()
    cached = Trainer(with_cache(sskd_config(teacher, tmp_path / "cached", *HEAD), tmp_path / "cache")).fit()
    assert (tmp_path / "cache").is_dir()
    a, b = read_metrics(live.out_dir)[-1], read_metrics(cached.out_dir)[-1]
    for key in ("train_loss", "train_sskd/kd", "train_sskd/ss", "train_sskd/tf"):
        assert abs(a[key] - b[key]) <= 5e-3 * max(1.0, abs(a[key])), (key, a[key], b[key])
