"""Decisions build_data takes from the config and the source: size, pipeline, statistics, subset, planner.

``data.per_class`` and ``data.label_noise`` are decided in :mod:`kdlab.data.training_set`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import numpy as np
import torch

from .cache import selection_digest
from .errors import DataError
from .planners import KnnBatchPlanner, RandomBatchPlanner, load_knn_neighbours, rank_columns
from .seeding import generator_for
from .sources import DatasetSource, SplitSpec
from .transforms import FAST_AUGMENTS, LARGE_IMAGE, STANDARD_ONLY_AUGMENTS

_PEEK_FILES = 16


def _peek_size(split: SplitSpec) -> int:
    """The (shorter) side of the first decodable image of a file-backed split."""
    assert split.files is not None
    errors = []
    for i in range(min(_PEEK_FILES, len(split))):
        try:
            width, height = split.files.load(i).size
            return min(width, height)
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(f"none of the first {len(errors)} images of the {split.name} split decode: {errors[0]}")


def resolve_image_size(cfg: Any, source: DatasetSource) -> int:
    """``data.image_size`` if set, else the dataset's native size."""
    if cfg.image_size:
        return int(cfg.image_size)
    if source.native_size:
        return int(source.native_size)
    return _peek_size(source.train)


def choose_pipeline(cfg: Any, size: int) -> str:
    """"fast" or "standard": forced by ``data.pipeline``, else fast for images <= 64 px with a fast augmentation."""
    if cfg.pipeline == "fast":
        if cfg.augment in STANDARD_ONLY_AUGMENTS:
            raise DataError(
                f"data.augment={cfg.augment} needs the standard path; with data.pipeline=fast use one of "
                f"{FAST_AUGMENTS} (or set data.pipeline=standard)"
            )
        return "fast"
    if cfg.pipeline == "standard":
        return "standard"
    return "fast" if size <= LARGE_IMAGE and cfg.augment in FAST_AUGMENTS else "standard"


def normalisation(cfg: Any, source: DatasetSource) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The dataset's mean/std, or ``data.mean``/``data.std`` when given (one value per channel)."""
    mean = tuple(float(v) for v in cfg.mean) if cfg.mean is not None else source.mean
    std = tuple(float(v) for v in cfg.std) if cfg.std is not None else source.std
    for key, values in (("data.mean", mean), ("data.std", std)):
        if len(values) != source.in_chans:
            raise DataError(
                f"{key} has {len(values)} values {list(values)}; "
                f"{source.name} images have {source.in_chans} channel(s)"
            )
    if any(v <= 0 for v in std):
        raise DataError(f"data.std must be positive, got {list(std)}")
    return mean, std


def subset_selection(cfg: Any, train_len: int) -> Optional[np.ndarray]:
    """Sorted indices of the fixed ``data.subset`` (independent of the trainer seed), or None."""
    if cfg.subset is None:
        return None
    count = int(cfg.subset)
    if count > train_len:
        raise DataError(f"data.subset={count} exceeds the {train_len} training samples of data.name={cfg.name}")
    order = torch.randperm(train_len, generator=generator_for("subset", count, train_len))
    return np.sort(order[:count].numpy())


def bundle_fingerprint(
    source: DatasetSource, selection: Optional[np.ndarray], size: int, label_noise: Any = None
) -> str:
    """Digest of the training data: source, selected samples (subset / per_class), resolution and label noise.

    ``label_noise``: a :class:`~kdlab.data.training_set.LabelNoise` or None (then the digest is the one
    of a run without label noise).
    """
    text = f"{source.fingerprint}|{selection_digest(selection)}|{size}"
    if label_noise is not None:
        text += f"|label_noise={float(label_noise.rate)!r},{int(label_noise.seed)}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def build_planner(cfg: Any, train_size: int, seed: int, rank: int, world_size: int) -> tuple[Any, slice]:
    """The batch planner of ``data.sampler`` and the columns this rank takes from each planned row."""
    if cfg.sampler == "knn":
        group = 1 + cfg.knn_neighbours
        expected = cfg.knn_anchors * group
        if cfg.batch_size != expected:
            raise DataError(
                f"with data.sampler=knn, data.batch_size={cfg.batch_size} must equal data.knn_anchors "
                f"({cfg.knn_anchors}) x (1 + data.knn_neighbours ({cfg.knn_neighbours})) = {expected}"
            )
        columns = rank_columns(expected, rank, world_size, group_size=group)
        if not cfg.knn_index:
            raise DataError("data.sampler=knn needs data.knn_index (a torch file with a 'neighbours' (N, K) tensor)")
        if cfg.knn_anchors > train_size:
            raise DataError(f"data.knn_anchors={cfg.knn_anchors} exceeds the {train_size} training samples")
        neighbours = load_knn_neighbours(cfg.knn_index, train_size)
        planner = KnnBatchPlanner(neighbours, cfg.knn_anchors, cfg.knn_neighbours, cfg.knn_pool, seed)
        return planner, columns
    columns = rank_columns(cfg.batch_size, rank, world_size)
    planner = RandomBatchPlanner(train_size, cfg.batch_size, seed, drop_last=True)
    if planner.steps == 0:
        raise DataError(f"data.batch_size={cfg.batch_size} exceeds the {train_size} training samples (no full batch)")
    return planner, columns
