"""A fixed part of an evaluation stream: the same images for every model, seed and device.

Corruption benchmarks evaluate every image 75 times (15 corruptions x 5 severities); on a
small machine a fixed random part of the evaluation split keeps that affordable while every
model is scored on exactly the same images (a paired comparison).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .fast import FastEvalStream
from .seeding import generator_for
from .standard import StandardEvalStream


def subset_positions(num_samples: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct positions of ``range(num_samples)``, drawn with ``seed``, in increasing order."""
    if count < 1:
        raise DataError(f"an evaluation subset needs at least 1 image, got {count}")
    if count >= num_samples:
        return torch.arange(num_samples, dtype=torch.long)
    order = torch.randperm(num_samples, generator=generator_for("eval-subset", seed))
    return order[:count].sort().values


def eval_subset(stream: Any, count: int, seed: int = 0) -> Any:
    """A copy of ``stream`` (a fast or standard evaluation stream) restricted to ``count`` of its images.

    The images are drawn once from ``seed`` among the stream's own samples and kept in index
    order; ``count`` at or above the stream's size gives the whole stream back.
    """
    if count >= stream.num_samples:
        return stream
    keep = subset_positions(stream.num_samples, count, seed)
    if isinstance(stream, FastEvalStream):
        return FastEvalStream(stream.images, stream.labels, stream.indices[keep.to(stream.indices.device)],
                              stream.batch_size, stream.augment)
    if isinstance(stream, StandardEvalStream):
        subset = copy.copy(stream)
        subset.dataset = copy.copy(stream.dataset)
        subset.dataset.positions = np.asarray(stream.dataset.positions)[keep.numpy()]
        subset.num_samples = int(keep.numel())
        return subset
    raise DataError(f"cannot take an evaluation subset of a {type(stream).__name__}")
