"""What every dataset reader returns: a described source, nothing decoded yet."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from ..imageio import FileTable, chw_to_pil

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SplitSpec:
    """One split: its labels and either the decoded pixels or the files that hold them."""

    name: str
    labels: np.ndarray
    arrays: Optional[np.ndarray] = None
    files: Optional[FileTable] = None

    def __post_init__(self) -> None:
        if (self.arrays is None) == (self.files is None):
            raise ValueError(f"SplitSpec {self.name!r} needs exactly one of arrays or files")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.arrays is not None

    def select(self, indices: Sequence[int] | np.ndarray) -> "SplitSpec":
        """The samples at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.arrays is not None:
            return SplitSpec(self.name, self.labels[indices], arrays=self.arrays[indices])
        assert self.files is not None
        return SplitSpec(self.name, self.labels[indices], files=self.files.select(indices))

    def with_labels(self, labels: np.ndarray) -> "SplitSpec":
        """The same samples with other labels (one per sample), e.g. noisy training labels."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != self.labels.shape:
            raise ValueError(f"SplitSpec {self.name!r}: {labels.shape} labels for {self.labels.shape} samples")
        return SplitSpec(self.name, labels, arrays=self.arrays, files=self.files)

    def load_pil(self, i: int) -> Image.Image:
        """Sample i as a PIL image (L or RGB); DataError naming the file if it cannot be decoded."""
        if self.arrays is not None:
            return chw_to_pil(self.arrays[i])
        assert self.files is not None
        return self.files.load(i)

    def describe(self, i: int) -> str:
        if self.files is not None:
            return self.files.describe(i)
        return f"{self.name} sample {i}"


@dataclass
class DatasetSource:
    """A dataset as found on disk (or generated): classes, statistics and its two splits.

    ``identity`` returns a string that changes whenever the underlying data
    changes; it is computed lazily because for a folder it stats every file.
    """

    name: str
    root: Optional[str]
    classes: list[str]
    in_chans: int
    native_size: Optional[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: SplitSpec
    eval: SplitSpec
    identity: Callable[[], str] = field(repr=False, default=lambda: "")

    @cached_property
    def fingerprint(self) -> str:
        """Hex digest of the source's name and identity (not of any subset or resolution)."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.name}|{self.identity()}".encode())
        return digest.hexdigest()


def array_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images on the [0, 1] scale."""
    scaled = images.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 2, 3))
    std = scaled.std(axis=(0, 2, 3))
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-6)) for s in std)
