"""Small generated datasets for the data tests: image folders, zips and CIFAR pickles."""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from kdlab.config.schema import DataConfig

CLASSES = ("cat", "dog", "eel")


def _pixels(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def write_imagefolder(
    root: Path, *, train_per_class: int = 4, eval_per_class: int = 2, size: int = 8,
    eval_split: str = "val", classes=CLASSES, fmt: str = "PNG",
) -> dict[str, np.ndarray]:
    """Write root/train/<class>/*.png and root/<eval_split>/<class>/*.png; return the pixels written, by path."""
    written = {}
    seed = 0
    ext = "png" if fmt == "PNG" else "jpg"
    for split, count in (("train", train_per_class), (eval_split, eval_per_class)):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed += 1
                pixels = _pixels(seed, size)
                path = folder / f"{i:03d}.{ext}"
                Image.fromarray(pixels).save(path, format=fmt)
                written[str(path.relative_to(root))] = pixels
    return written


def zip_folder(folder: Path, zip_path: Path, *, under: str = "") -> Path:
    """Zip ``folder``'s contents (stored), optionally below a top-level folder ``under``."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{under}{path.relative_to(folder).as_posix()}")
    return zip_path


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 6) -> Path:
    """A CIFAR python-version folder with tiny batches; returns the batch folder."""
    rng = np.random.default_rng(7)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        files, test, meta, label_key, names_key, classes = (
            [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta", b"labels", b"label_names", 10
        )
    else:
        folder = root / "cifar-100-python"
        files, test, meta, label_key, names_key, classes = (["train"], "test", "meta", b"fine_labels", b"fine_label_names", 100)
    folder.mkdir(parents=True)
    for file_name in files + [test]:
        batch = {
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            label_key: [int(v) for v in rng.integers(0, classes, size=per_batch)],
        }
        with (folder / file_name).open("wb") as handle:
            pickle.dump(batch, handle)
    with (folder / meta).open("wb") as handle:
        pickle.dump({names_key: [f"c{i}".encode() for i in range(classes)]}, handle)
    return folder


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_cfg(cache_dir: Path) -> Callable[..., DataConfig]:
    """DataConfig factory with a private cache folder and no DataLoader workers by default."""

    def make(**overrides) -> DataConfig:
        base = DataConfig(cache_dir=str(cache_dir), num_workers=0)
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def imagefolder_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "folder"
    return root, write_imagefolder(root)


@pytest.fixture
def datagen():
    """The dataset writers above, for tests that need variations."""
    import types

    return types.SimpleNamespace(
        write_imagefolder=write_imagefolder, zip_folder=zip_folder, write_cifar=write_cifar, classes=CLASSES
    )
