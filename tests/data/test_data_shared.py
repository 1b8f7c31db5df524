"""The real CIFAR-10 JPEG zip in ../shared (skipped where it is absent)."""

from __future__ import annotations

import time

import pytest
import torch

from kdlab.config.schema import DataConfig
from kdlab.data import build_data, dataset_info, prepare_cache

pytestmark = pytest.mark.shared


def _zip(shared_dir) -> str:
    return str(shared_dir / "data" / "cifar10-jpg.zip")


def test_dataset_info_lists_the_zip_without_decoding(shared_dir, monkeypatch):
    import kdlab.data.imageio as imageio

    monkeypatch.setattr(imageio, "decode_image", lambda *a, **k: pytest.fail("dataset_info decoded an image"))
    started = time.perf_counter()
    info = dataset_info(DataConfig(name="imagefolder", root=_zip(shared_dir)))
    elapsed = time.perf_counter() - started
    assert info["splits"] == {"train": {"samples": 50000, "classes": 10}, "test": {"samples": 10000, "classes": 10}}
    assert info["classes"][:3] == ["airplane", "automobile", "bird"]
    assert elapsed < 60  # generous: a name-list read, not a decode (about 0.3 s here)


def test_prepare_cache_on_a_subset_then_build(shared_dir, tmp_path):
    cfg = DataConfig(name="imagefolder", root=_zip(shared_dir), subset=600, cache_dir=str(tmp_path), batch_size=64)
    report = prepare_cache(cfg, progress=False)
    assert report["image_size"] == 32 and report["skipped"] == 0
    assert report["splits"]["train"]["shape"] == [600, 3, 32, 32]
    assert report["splits"]["test"]["samples"] == 10000
    bundle = build_data(cfg, seed=0)
    assert bundle.train_size == 600 and bundle.eval.num_samples == 10000
    batch = next(bundle.train.epoch(0))
    assert batch["image"].shape == (64, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert prepare_cache(cfg, progress=False)["splits"]["train"]["from_cache"]
