"""Deterministic random images whose class is learnable (for tests and smoke runs)."""

from __future__ import annotations

import numpy as np

from .base import DatasetSource, SplitSpec, array_stats

_BASE_SEED = 20240611


def _class_prototypes(num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One float (3, size, size) template per class: a colour plus an oriented stripe pattern."""
    colours = rng.uniform(0.2, 0.8, size=(num_classes, 3, 1, 1))
    angles = rng.uniform(0.0, np.pi, size=num_classes)
    frequencies = rng.uniform(1.0, 4.0, size=num_classes)
    coords = np.linspace(0.0, 2.0 * np.pi, size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    projected = np.cos(angles)[:, None, None] * xx + np.sin(angles)[:, None, None] * yy
    stripes = np.sin(frequencies[:, None, None] * projected)[:, None, :, :]
    return colours + 0.2 * stripes


def _draw_split(prototypes: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    num_classes = prototypes.shape[0]
    labels = np.arange(count, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    noise = rng.normal(0.0, 0.12, size=(count,) + prototypes.shape[1:])
    images = np.clip(prototypes[labels] + noise, 0.0, 1.0)
    return np.rint(images * 255.0).astype(np.uint8), labels


def open_synthetic(train: int, test: int, num_classes: int, size: int) -> DatasetSource:
    """``train`` + ``test`` RGB images of ``size`` px in ``num_classes`` classes, the same every call."""
    params = (train, test, num_classes, size)
    rng = np.random.default_rng([_BASE_SEED, *params])
    prototypes = _class_prototypes(num_classes, size, rng)
    train_images, train_labels = _draw_split(prototypes, train, rng)
    test_images, test_labels = _draw_split(prototypes, test, rng)
    mean, std = array_stats(train_images)
    return DatasetSource(
        name="synthetic",
        root=None,
        classes=[f"class_{c}" for c in range(num_classes)],
        in_chans=3,
        native_size=size,
        mean=mean,
        std=std,
        train=SplitSpec("train", train_labels, arrays=train_images),
        eval=SplitSpec("test", test_labels, arrays=test_images),
        identity=lambda: "synthetic|v1|" + "|".join(map(str, params)),
    )
