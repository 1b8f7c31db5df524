"""Tiny generated datasets and teachers for the performance tests (no ../shared needed)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


from perf_helpers import CLASSES, write_teacher  # noqa: F401  (fixtures below use them)


def write_zip(path: Path, *, train_per_class: int = 16, eval_per_class: int = 2, size: int = 8) -> Path:
    """An ImageFolder zip (train/ and val/, PNG images of random pixels)."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for split, count in (("train", train_per_class), ("val", eval_per_class)):
            for cls in CLASSES:
                for i in range(count):
                    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                    image = Image.fromarray(pixels)
                    target = path.parent / f"tmp_{split}_{cls}_{i}.png"
                    image.save(target)
                    archive.write(target, f"{split}/{cls}/{i:03d}.png")
                    target.unlink()
    return path




@pytest.fixture
def tiny(tmp_path: Path) -> dict:
    """Paths and the overrides of a tiny KD setup: imagefolder zip (48 train images, 8 px), resnet8 teacher."""
    data = write_zip(tmp_path / "tiny.zip")
    teacher = write_teacher(tmp_path / "teacher.pt")
    overrides = [
        "data.name=imagefolder",
        f"data.root={data}",
        f"data.cache_dir={tmp_path / 'data-cache'}",
        "data.batch_size=16",
        "data.eval_batch_size=16",
        "data.augment=crop_flip",
        "data.crop_padding=1",
        "data.num_workers=0",
        "data.pipeline=fast",
        "model.name=resnet8",
        "teacher.name=resnet8",
        f"teacher.checkpoint={teacher}",
        "distill.terms=[{name: ce, weight: 0.1}, {name: kd, weight: 0.9, temperature: 4.0}]",
        "trainer.device=cpu",
        "trainer.progress=none",
        "trainer.epochs=2",
        "optim.lr=0.05",
        "schedule.name=constant",
    ]
    return {"root": tmp_path, "zip": data, "teacher": teacher, "overrides": overrides}
