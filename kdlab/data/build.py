"""Entry point of the data package: :func:`build_data` assembles a :class:`DataBundle`."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from .augment import BatchAugment
from .cache import SKIPPED_SHOWN, CachedSplit, default_cache_dir, load_or_decode, load_or_find_undecodable
from .decisions import build_planner, bundle_fingerprint, choose_pipeline, normalisation, resolve_image_size
from .decode import decode_split
from .errors import DataError
from .fast import FastEvalStream, FastTrainStream
from .sources import DatasetSource, SplitSpec, open_source
from .standard import SeededTrainDataset, StandardEvalStream, StandardTrainStream
from .streams_common import eval_shard
from .training_set import (
    LabelNoise,
    NoiseResult,
    apply_label_noise,
    describe_per_class,
    label_noise_spec,
    training_selection,
)
from .transforms import FAST_AUGMENTS, eval_transform, train_transform
from .types import DataBundle, EvalStream, TrainStream

logger = logging.getLogger("kdlab.data")


@dataclass
class _Resolved:
    """What build_data decided before assembling streams."""

    cfg: Any
    source: DatasetSource
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    selection: Optional[np.ndarray]
    train_split: SplitSpec
    label_noise: Optional[LabelNoise]
    seed: int
    device: torch.device
    rank: int
    world_size: int
    channels_last: bool
    progress: bool


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


def _training_labels(r: _Resolved, clean: np.ndarray) -> tuple[np.ndarray, Optional[NoiseResult]]:
    """The labels training sees: ``clean`` itself, or a noisy copy under ``data.label_noise``."""
    if r.label_noise is None:
        return clean, None
    result = apply_label_noise(clean, len(r.source.classes), r.label_noise)
    return result.labels, result


_Streams = tuple[TrainStream, EvalStream, EvalStream, torch.Tensor, Optional[NoiseResult]]


# -- pipelines ---------------------------------------------------------------
def _fast_streams(r: _Resolved) -> _Streams:
    cfg = r.cfg
    train_data = _fast_split(cfg, r.source, r.train_split, r.selection, r.size, r.progress)
    labels, noise = _training_labels(r, train_data.labels)
    eval_data = _fast_split(cfg, r.source, r.source.eval, None, r.size, r.progress)
    train_size = int(train_data.images.shape[0])
    planner, columns = build_planner(cfg, train_size, r.seed, r.rank, r.world_size)
    augment = BatchAugment(
        size=r.size, mean=r.mean, std=r.std,
        crop=cfg.augment in ("crop", "crop_flip"), flip=cfg.augment in ("flip", "crop_flip"),
        padding=cfg.crop_padding, views=cfg.views, num_views=cfg.num_views, channels_last=r.channels_last,
    )

    def on_device(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(r.device)

    train_images, train_labels = on_device(train_data.images), on_device(labels)
    clean_labels = train_labels if noise is None else on_device(train_data.labels)
    eval_images, eval_labels = on_device(eval_data.images), on_device(eval_data.labels)
    train = FastTrainStream(train_images, train_labels, planner, columns, augment, r.seed)
    evaluation = FastEvalStream(
        eval_images, eval_labels, eval_shard(len(eval_labels), r.rank, r.world_size), cfg.eval_batch_size, augment
    )
    # evaluation over the training images (kNN reference, linear probe) keeps the true labels
    train_eval = FastEvalStream(
        train_images, clean_labels, eval_shard(train_size, r.rank, r.world_size), cfg.eval_batch_size, augment
    )
    return train, evaluation, train_eval, torch.from_numpy(np.asarray(labels, dtype=np.int64)), noise


def _standard_streams(r: _Resolved) -> _Streams:
    cfg = r.cfg
    train_split = _skip_undecodable_standard(cfg, r.source, r.train_split, r.selection, r.progress)
    labels, noise = _training_labels(r, train_split.labels)
    noisy_split = train_split if noise is None else train_split.with_labels(labels)
    eval_split = _skip_undecodable_standard(cfg, r.source, r.source.eval, None, r.progress)
    train_size = len(train_split)
    planner, columns = build_planner(cfg, train_size, r.seed, r.rank, r.world_size)
    train_tf = train_transform(
        augment=cfg.augment, size=r.size, padding=cfg.crop_padding, mean=r.mean, std=r.std,
        views=cfg.views, num_views=cfg.num_views,
    )
    eval_tf = eval_transform(size=r.size, mean=r.mean, std=r.std)
    loader_args: dict[str, Any] = dict(device=r.device, num_workers=cfg.num_workers, channels_last=r.channels_last)
    train = StandardTrainStream(SeededTrainDataset(noisy_split, train_tf), planner, columns, r.seed, **loader_args)
    evaluation = StandardEvalStream(
        eval_split, eval_tf, eval_shard(len(eval_split), r.rank, r.world_size), cfg.eval_batch_size, **loader_args
    )
    # evaluation over the training images (kNN reference, linear probe) keeps the true labels
    train_eval = StandardEvalStream(
        train_split, eval_tf, eval_shard(train_size, r.rank, r.world_size), cfg.eval_batch_size, **loader_args
    )
    return train, evaluation, train_eval, torch.from_numpy(np.asarray(labels, dtype=np.int64)), noise


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
    global batch and its shard of the eval splits. ``progress``: bars while
    decoding, and the bundle's ``notes`` (data.per_class, data.label_noise)
    printed as lines for the user (the trainer passes it on rank 0 unless
    ``trainer.progress=none``); the notes always go to the ``kdlab.data`` logger.
    """
    if cfg.views == "rotate4" and cfg.augment not in FAST_AUGMENTS:
        raise DataError(
            f"data.views=rotate4 crops and flips itself; data.augment must be one of {FAST_AUGMENTS}, "
            f"got {cfg.augment!r}"
        )
    source = open_source(cfg)
    size = resolve_image_size(cfg, source)
    pipeline = choose_pipeline(cfg, size)
    mean, std = normalisation(cfg, source)
    selection = training_selection(cfg, source)
    label_noise = label_noise_spec(cfg)
    resolved = _Resolved(
        cfg=cfg, source=source, size=size, mean=mean, std=std, selection=selection,
        train_split=source.train.select(selection) if selection is not None else source.train,
        label_noise=label_noise, seed=seed, device=torch.device(device), rank=rank, world_size=world_size,
        channels_last=channels_last, progress=progress,
    )
    assemble = _fast_streams if pipeline == "fast" else _standard_streams
    train, evaluation, train_eval, train_targets, noise = assemble(resolved)
    train_size = int(train_targets.numel())
    logger.info(
        "data: %s (%s path), %d train / %d %s samples, %dpx, %d steps/epoch",
        source.name, pipeline, train_size, evaluation.num_samples, source.eval.name, size, train.steps_per_epoch,
    )
    notes = [line for line in (describe_per_class(cfg, source, selection), noise and noise.describe()) if line]
    for line in notes:
        logger.info(line)
        if progress:
            print(line, flush=True)  # what the trainer's progress lines are: stdout, rank 0, unless progress=none
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
        fingerprint=bundle_fingerprint(source, selection, size, label_noise),
        train_targets=train_targets,
        notes=notes,
    )
