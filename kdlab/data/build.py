"""Entry points: :func:`build_data`, :func:`dataset_info` and :func:`prepare_cache`."""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any, Optional

import numpy as np
import torch

from .augment import BatchAugment
from .cache import (
    SKIPPED_SHOWN,
    CachedSplit,
    default_cache_dir,
    load_or_decode,
    load_or_find_undecodable,
    selection_digest,
)
from .decode import decode_split
from .errors import DataError
from .fast import FastEvalStream, FastTrainStream
from .planners import KnnBatchPlanner, RandomBatchPlanner, load_knn_neighbours, rank_columns
from .seeding import generator_for
from .sources import DatasetSource, SplitSpec, list_imagefolder, open_source
from .standard import SeededTrainDataset, StandardEvalStream, StandardTrainStream
from .streams_common import eval_shard
from .transforms import FAST_AUGMENTS, LARGE_IMAGE, STANDARD_ONLY_AUGMENTS, eval_transform, train_transform
from .types import DataBundle

logger = logging.getLogger("kdlab.data")

_PEEK_FILES = 16


# -- decisions ---------------------------------------------------------------
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
            raise DataError(f"{key} has {len(values)} values {list(values)}; {source.name} images have {source.in_chans} channel(s)")
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


def bundle_fingerprint(source: DatasetSource, selection: Optional[np.ndarray], size: int) -> str:
    text = f"{source.fingerprint}|{selection_digest(selection)}|{size}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _planner(cfg: Any, train_size: int, seed: int, rank: int, world_size: int):
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


# -- fast-path decoding ------------------------------------------------------
def _fast_split(
    cfg: Any, source: DatasetSource, split: SplitSpec, selection: Optional[np.ndarray], size: int, progress: bool
) -> CachedSplit:
    if split.in_memory:
        decoded = decode_split(split, size)
        return CachedSplit(decoded.images, decoded.labels, decoded.kept, [], path=None, from_cache=False, seconds=0.0)
    return load_or_decode(
        split,
        cache_root=default_cache_dir(cfg),
        dataset=source.name,
        source_fingerprint=source.fingerprint,
        selection=selection,
        size=size,
        on_corrupt=cfg.on_corrupt,
        progress=progress,
    )


def _skip_undecodable_standard(
    cfg: Any, source: DatasetSource, split: SplitSpec, selection: Optional[np.ndarray], progress: bool
) -> SplitSpec:
    if cfg.on_corrupt != "skip" or split.in_memory:
        return split
    bad = load_or_find_undecodable(
        split, cache_root=default_cache_dir(cfg), dataset=source.name,
        source_fingerprint=source.fingerprint, selection=selection, progress=progress,
    )
    if not bad:
        return split
    names = [split.describe(i) for i in bad]
    shown = ", ".join(names[:SKIPPED_SHOWN]) + (" ..." if len(names) > SKIPPED_SHOWN else "")
    message = f"skipped {len(bad)} undecodable image(s) of the {split.name} split: {shown}"
    logger.warning(message)
    warnings.warn(message, stacklevel=3)
    keep = np.setdiff1d(np.arange(len(split)), np.asarray(bad, dtype=np.int64))
    if keep.size == 0:
        raise DataError(f"no decodable images in the {split.name} split ({len(split)} files, all broken)")
    return split.select(keep)


# -- public entry points -----------------------------------------------------
def build_data(
    cfg: Any,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
    progress: bool = False,
) -> DataBundle:
    """Everything the trainer reads: augmented training stream, eval streams and dataset facts.

    ``cfg`` is a DataConfig; ``seed`` fixes the epoch order and augmentation.
    With ``world_size`` processes, this one (``rank``) gets its share of each
    global batch and its shard of the eval splits.
    """
    device = torch.device(device)
    source = open_source(cfg)
    size = resolve_image_size(cfg, source)
    pipeline = choose_pipeline(cfg, size)
    mean, std = normalisation(cfg, source)
    selection = subset_selection(cfg, len(source.train))
    train_split = source.train.select(selection) if selection is not None else source.train
    fingerprint = bundle_fingerprint(source, selection, size)
    crop = cfg.augment in ("crop", "crop_flip")
    flip = cfg.augment in ("flip", "crop_flip")
    if cfg.views == "rotate4" and cfg.augment not in FAST_AUGMENTS:
        raise DataError(f"data.views=rotate4 crops and flips itself; data.augment must be one of {FAST_AUGMENTS}, got {cfg.augment!r}")

    if pipeline == "fast":
        train_data = _fast_split(cfg, source, train_split, selection, size, progress)
        eval_data = _fast_split(cfg, source, source.eval, None, size, progress)
        train_size = int(train_data.images.shape[0])
        planner, columns = _planner(cfg, train_size, seed, rank, world_size)
        augment = BatchAugment(
            size=size, mean=mean, std=std, crop=crop, flip=flip, padding=cfg.crop_padding,
            views=cfg.views, num_views=cfg.num_views, channels_last=channels_last,
        )
        train_images = torch.from_numpy(np.ascontiguousarray(train_data.images)).to(device)
        train_labels = torch.from_numpy(np.ascontiguousarray(train_data.labels)).to(device)
        eval_images = torch.from_numpy(np.ascontiguousarray(eval_data.images)).to(device)
        eval_labels = torch.from_numpy(np.ascontiguousarray(eval_data.labels)).to(device)
        train = FastTrainStream(train_images, train_labels, planner, columns, augment, seed)
        evaluation = FastEvalStream(
            eval_images, eval_labels, eval_shard(len(eval_labels), rank, world_size), cfg.eval_batch_size, augment
        )
        train_eval = FastEvalStream(
            train_images, train_labels, eval_shard(train_size, rank, world_size), cfg.eval_batch_size, augment
        )
    else:
        train_split = _skip_undecodable_standard(cfg, source, train_split, selection, progress)
        eval_split = _skip_undecodable_standard(cfg, source, source.eval, None, progress)
        train_size = len(train_split)
        planner, columns = _planner(cfg, train_size, seed, rank, world_size)
        train_tf = train_transform(
            augment=cfg.augment, size=size, padding=cfg.crop_padding, mean=mean, std=std,
            views=cfg.views, num_views=cfg.num_views,
        )
        eval_tf = eval_transform(size=size, mean=mean, std=std)
        loader_args = dict(device=device, num_workers=cfg.num_workers, channels_last=channels_last)
        train = StandardTrainStream(SeededTrainDataset(train_split, train_tf), planner, columns, seed, **loader_args)
        evaluation = StandardEvalStream(
            eval_split, eval_tf, eval_shard(len(eval_split), rank, world_size), cfg.eval_batch_size, **loader_args
        )
        train_eval = StandardEvalStream(
            train_split, eval_tf, eval_shard(train_size, rank, world_size), cfg.eval_batch_size, **loader_args
        )

    logger.info(
        "data: %s (%s path), %d train / %d %s samples, %dpx, %d steps/epoch",
        source.name, pipeline, train_size, evaluation.num_samples, source.eval.name, size, train.steps_per_epoch,
    )
    return DataBundle(
        train=train,
        eval=evaluation,
        train_eval=train_eval,
        num_classes=len(source.classes),
        classes=list(source.classes),
        in_chans=source.in_chans,
        image_size=size,
        mean=tuple(mean),
        std=tuple(std),
        train_size=train_size,
        fingerprint=fingerprint,
    )


def _split_counts(labels: np.ndarray) -> dict[str, int]:
    return {"samples": int(labels.shape[0]), "classes": int(np.unique(labels).size)}


def dataset_info(cfg: Any) -> dict:
    """Splits, sample and class counts of the dataset, without decoding any image."""
    if cfg.name == "imagefolder":
        listing = list_imagefolder(cfg.root)
        classes = sorted(listing.splits["train"])
        splits = {
            split: {"samples": sum(len(v) for v in listing.splits[split].values()), "classes": len(listing.splits[split])}
            for split in ("train", listing.eval_split)
        }
        root, in_chans, size, eval_name = str(listing.container), 3, None, listing.eval_split
    else:
        source = open_source(cfg)
        classes = list(source.classes)
        splits = {"train": _split_counts(source.train.labels), source.eval.name: _split_counts(source.eval.labels)}
        root, in_chans, size, eval_name = source.root, source.in_chans, source.native_size, source.eval.name
    return {
        "name": cfg.name,
        "root": root,
        "classes": classes,
        "num_classes": len(classes),
        "in_chans": in_chans,
        "image_size": size,
        "eval_split": eval_name,
        "subset": cfg.subset,
        "splits": splits,
    }


def prepare_cache(cfg: Any, *, progress: bool = True) -> dict:
    """Decode the training (subset) and eval splits into the fast-path cache; report what is there."""
    source = open_source(cfg)
    size = resolve_image_size(cfg, source)
    selection = subset_selection(cfg, len(source.train))
    train_split = source.train.select(selection) if selection is not None else source.train
    cache_root = default_cache_dir(cfg)
    report: dict[str, Any] = {
        "name": source.name,
        "root": source.root,
        "cache_dir": str(cache_root),
        "image_size": size,
        "fingerprint": bundle_fingerprint(source, selection, size),
        "splits": {},
        "skipped": 0,
    }
    for split, split_selection in ((train_split, selection), (source.eval, None)):
        if split.in_memory:
            report["splits"][split.name] = {
                "cached": False,
                "samples": len(split),
                "reason": f"{source.name} is read straight into memory; it needs no cache",
            }
            continue
        result = load_or_decode(
            split, cache_root=cache_root, dataset=source.name, source_fingerprint=source.fingerprint,
            selection=split_selection, size=size, on_corrupt=cfg.on_corrupt, progress=progress,
        )
        report["splits"][split.name] = {
            "cached": True,
            "path": str(result.path),
            "samples": int(result.images.shape[0]),
            "bytes": result.bytes,
            "shape": list(result.images.shape),
            "from_cache": result.from_cache,
            "seconds": round(result.seconds, 3),
            "skipped": len(result.skipped),
            "skipped_files": result.skipped[:SKIPPED_SHOWN],
        }
        report["skipped"] += len(result.skipped)
    return report
