"""scikit-learn's embedded 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import numpy as np

from .base import DatasetSource, SplitSpec, array_stats

# Fixed so that every run and every trainer seed shares the same split.
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


def open_digits() -> DatasetSource:
    """The digits as 1-channel uint8 images, split 80/20 stratified by class with a fixed seed."""
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # The raw values are 0..16; scale to the 0..255 range of ordinary images.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(labels.shape[0]), test_size=_TEST_FRACTION, stratify=labels, random_state=_SPLIT_SEED
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    mean, std = array_stats(images[train_idx])
    return DatasetSource(
        name="digits",
        root=None,
        classes=[str(c) for c in range(10)],
        in_chans=1,
        native_size=8,
        mean=mean,
        std=std,
        train=SplitSpec("train", labels[train_idx], arrays=images[train_idx]),
        eval=SplitSpec("test", labels[test_idx], arrays=images[test_idx]),
        identity=lambda: f"sklearn-digits|{sklearn.__version__}|{_SPLIT_SEED}|{_TEST_FRACTION}",
    )
