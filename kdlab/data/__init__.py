"""Datasets, caches, batch planning and augmentation for kdlab (no networks here).

Two pipelines deliver the same :class:`DataBundle`:

* the standard path: torchvision transforms on PIL images in a DataLoader;
* the fast path (images <= 64 px): images decoded once to uint8, cached on
  disk, held on the device and augmented a whole batch at a time.

All randomness is derived from (seed, epoch[, step]) so batches replay
exactly on resume, under DDP and for teacher-output caches.
"""

from __future__ import annotations

from .augment import BatchAugment
from .bench import bench_data
from .build import build_data
from .info import dataset_info, prepare_cache
from .errors import DataError
from .planners import KnnBatchPlanner, RandomBatchPlanner, rank_columns
from .seeding import derive_seed, generator_for
from .types import Batch, DataBundle, EvalStream, TrainStream

__all__ = [
    "Batch",
    "BatchAugment",
    "DataBundle",
    "DataError",
    "EvalStream",
    "KnnBatchPlanner",
    "RandomBatchPlanner",
    "TrainStream",
    "bench_data",
    "build_data",
    "dataset_info",
    "derive_seed",
    "generator_for",
    "prepare_cache",
    "rank_columns",
]
