"""Running the teacher once over a fixed, replayable schedule and writing what the losses need.

The schedule is the data path's own, drawn for the whole global batch with the
cache's seed: on the fast path the planner's order and ``params_at(epoch,
step)`` (crop offsets, flips, rotations per view); on the standard path the
planner's order and each sample's augmentation seed, under which its
torchvision transforms run (RandomResizedCrop, colour jitter, ...). Sample
indices and augmentation parameters are stored explicitly next to the teacher
outputs, with a checksum of every network input, so a student run reproduces
(and verifies) the exact image the teacher saw.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import torch
from torch import nn

import kdlab
from kdlab.data.fast import FastTrainStream
from kdlab.data.standard import StandardTrainStream
from kdlab.models.features import Features

from .checksum import input_checksums
from .errors import TeacherCacheError
from .outputs import CACHEABLE_FIELDS, STORE_DTYPES, OutputLayout
from .soft_labels import resolve_top_k
from .storage import CacheWriter
from .teacher_cache import AUG_PREFIX, TeacherCache

_INT16 = np.iinfo(np.int16)


ReplayableStream = Union[FastTrainStream, StandardTrainStream]


def full_batch_stream(stream: ReplayableStream) -> ReplayableStream:
    """``stream`` drawing every column of the global batch (a DDP rank's stream holds only its share)."""
    everything = slice(0, stream.planner.global_batch)
    if stream.columns == everything:
        return stream
    if isinstance(stream, StandardTrainStream):
        return StandardTrainStream(
            stream.dataset, stream.planner, everything, stream.seed, device=stream.device,
            num_workers=stream.num_workers, channels_last=stream.channels_last,
        )
    return FastTrainStream(stream.images, stream.labels, stream.planner, everything, stream.augment, stream.seed)


def _teacher_outputs(teacher: nn.Module, images: torch.Tensor, fields: Iterable[str]) -> Features:
    if "embedding" in fields:
        return teacher.forward_all(images)
    return Features(logits=teacher(images), embedding=None, stages=[], preact_stages=[])  # type: ignore[arg-type]


_WIDE_PARAMS = frozenset({"seed"})  # the standard path's per-sample augmentation seeds (int64)


def _param_dtype(value: torch.Tensor, name: str) -> Any:
    if value.dtype == torch.bool:
        return np.bool_
    if value.dtype.is_floating_point:
        return np.float32
    if name in _WIDE_PARAMS:
        return np.int64
    return np.int16  # crop offsets and rotations; checked when stored


def _store_param(array: np.ndarray, where: tuple, value: torch.Tensor, name: str) -> None:
    data = value.cpu().numpy()
    if name in _WIDE_PARAMS:
        array[where] = data
        return
    if array.dtype == np.int16 and data.size and (data.min() < _INT16.min or data.max() > _INT16.max):
        raise TeacherCacheError(
            f"augmentation parameter {name!r} holds values beyond int16 ({data.min()}..{data.max()})"
        )
    array[where] = data


def build_teacher_cache(
    path: str | Path,
    *,
    key: dict[str, Any],
    stream: ReplayableStream,
    teacher: nn.Module,
    fields: Iterable[str],
    epochs: int,
    top_k: Optional[int] = None,
    store_dtype: str = "float16",
    autocast: Optional[Any] = None,
    progress: bool = False,
) -> TeacherCache:
    """Run ``teacher`` over ``epochs`` epochs of ``stream``'s schedule and write the cache at ``path``.

    Args:
        key: :func:`kdlab.cache.key.cache_key` of the setup (stored, checked by users of the cache).
        stream: the training stream (fast or standard path) whose seed fixes the schedule.
        teacher: the frozen teacher (a FrozenTeacher: eval mode, input re-normalisation).
        fields: teacher outputs to keep, any of ``logits``, ``embedding``.
        top_k: logits kept per row; None: automatic (full logits up to 100 classes), 0: full logits.
        store_dtype: ``float16`` (default) or ``float32`` (full logits and embeddings then equal the live
            teacher's bit for bit, so a cached run equals a live one).
        autocast: an autocast context for the teacher forward (the run's precision), or None for fp32.

    Returns the opened cache (another process's, if it published one first).
    """
    requested = set(fields)
    if not requested or requested - set(CACHEABLE_FIELDS):
        raise TeacherCacheError(f"a teacher cache holds some of {CACHEABLE_FIELDS}, asked for {sorted(requested)}")
    fields = tuple(f for f in CACHEABLE_FIELDS if f in requested)
    if store_dtype not in STORE_DTYPES:
        raise TeacherCacheError(f"teacher outputs are stored as one of {STORE_DTYPES}, got {store_dtype!r}")
    if epochs < 1:
        raise TeacherCacheError(f"a teacher cache needs at least 1 epoch, asked for {epochs}")
    full = full_batch_stream(stream)
    steps = full.steps_per_epoch
    if steps < 1:
        raise TeacherCacheError(f"the training stream has no full batch (batch {full.planner.global_batch})")
    samples = len(full.dataset) if isinstance(full, StandardTrainStream) else full.images.shape[0]
    if samples > np.iinfo(np.int32).max:
        raise TeacherCacheError(f"{samples} training samples exceed the cache's int32 sample index")
    teacher.eval()
    writer = CacheWriter(path)
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs * steps, desc=f"teacher cache {Path(path).name}", unit="step", leave=False)
    try:
        arrays: dict[str, np.ndarray] = {}
        layout: Optional[OutputLayout] = None
        meta: dict[str, Any] = {}
        for epoch in range(epochs):
            for step, batch in enumerate(full.epoch(epoch)):
                images = batch["image"]
                inputs = images.flatten(0, 1) if images.ndim == 5 else images
                with torch.inference_mode(), (autocast if autocast is not None else nullcontext()):
                    features = _teacher_outputs(teacher, inputs, fields)
                if layout is None:
                    layout, arrays, meta = _allocate(
                        writer, batch, features, fields, epochs, steps, top_k, store_dtype
                    )
                where = (epoch, step)
                arrays["index"][where] = batch["index"].cpu().numpy()
                for name, value in batch["aug"].items():
                    _store_param(arrays[AUG_PREFIX + name], where, value, name)
                arrays["checksum"][where] = input_checksums(images).cpu().numpy()
                layout.store(arrays, where, features)
                if bar is not None:
                    bar.update(1)
        meta.update(
            key=key,
            epochs=epochs,
            steps_per_epoch=steps,
            global_batch=full.planner.global_batch,
            teacher_precision=getattr(teacher, "precision", None)
            or ("fp32" if autocast is None else str(getattr(autocast, "fast_dtype", "autocast"))),
            build_seconds=round(time.perf_counter() - started, 3),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            kdlab_version=kdlab.__version__,
        )
        arrays.clear()
        writer.commit(meta)
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return TeacherCache(path)


def _allocate(
    writer: CacheWriter,
    batch: dict[str, Any],
    features: Features,
    fields: tuple[str, ...],
    epochs: int,
    steps: int,
    top_k: Optional[int],
    store_dtype: str,
) -> tuple[OutputLayout, dict[str, np.ndarray], dict[str, Any]]:
    """Create every array once the first batch shows the shapes."""
    images = batch["image"]
    columns = images.shape[0]
    views = images.shape[1] if images.ndim == 5 else 1
    lead = (epochs, steps)
    num_classes = int(features.logits.shape[-1]) if "logits" in fields else 0
    embedding_dim = int(features.embedding.shape[-1]) if "embedding" in fields else 0
    k = resolve_top_k(top_k, num_classes) if num_classes else 0
    layout = OutputLayout(fields, num_classes, k, embedding_dim, store_dtype)
    arrays = {
        "index": writer.array("index", lead + (columns,), np.int32),
        "checksum": writer.array("checksum", lead + (columns * views,), np.float32),
    }
    for name, value in batch["aug"].items():
        arrays[AUG_PREFIX + name] = writer.array(AUG_PREFIX + name, lead + tuple(value.shape), _param_dtype(value, name))
    arrays.update(layout.allocate(writer, lead + (columns * views,)))
    meta = {
        **layout.to_meta(),
        "views": views,
        "image_shape": list(images.shape[-3:]),
        "aug_dtypes": {name: str(value.dtype).replace("torch.", "") for name, value in batch["aug"].items()},
        "checksum": "position-weighted-sum-v1",
    }
    return layout, arrays, meta
