"""Decode a file-backed split into one uint8 (N, C, S, S) array, in a process pool when it pays off.

Workers never raise for a broken image: they report it, and the caller either
stops with a DataError naming the file (``data.on_corrupt=error``) or drops it
and says so (``skip``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .imageio import FileTable, fit_square, pil_to_chw
from .sources.base import SplitSpec

logger = logging.getLogger("kdlab.data")

_CHUNK = 1024
_MIN_FOR_POOL = 2048  # below this a pool's start-up costs more than it saves
SKIPPED_SHOWN = 10


@dataclass
class DecodedSplit:
    """Pixels and labels of the decodable samples of a split, and what was skipped."""

    images: np.ndarray
    labels: np.ndarray
    kept: np.ndarray
    skipped: list[str] = field(default_factory=list)


def _decode_chunk(table: FileTable, start: int, size: Optional[int]) -> tuple[int, np.ndarray, list[tuple[int, str]]]:
    """Decode every file of ``table``; returns (start, pixels of the good ones, [(position, error), ...])."""
    good: list[np.ndarray] = []
    bad: list[tuple[int, str]] = []
    for i in range(len(table)):
        try:
            image = table.load(i)
        except DataError as exc:
            bad.append((i, str(exc)))
            continue
        if size is not None:
            good.append(pil_to_chw(fit_square(image, size)))
    pixels = np.stack(good) if good else np.zeros((0, 3, size or 0, size or 0), dtype=np.uint8)
    return start, pixels, bad


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _decode_task(task: tuple[FileTable, int, Optional[int]]) -> tuple[int, np.ndarray, list[tuple[int, str]]]:
    return _decode_chunk(*task)


def _run_chunks(table: FileTable, size: Optional[int], progress: bool, desc: str) -> Iterator[tuple]:
    """Decode ``table`` chunk by chunk (in order), in a pool of one process per core when large enough."""
    starts = range(0, len(table), _CHUNK)
    tasks = [(table.select(range(s, min(s + _CHUNK, len(table)))), s, size) for s in starts]
    workers = min(os.cpu_count() or 1, len(tasks))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(table), desc=desc, unit="img", leave=False)
    try:
        if workers > 1 and len(table) >= _MIN_FOR_POOL:
            with _pool_context().Pool(workers) as pool:
                for result in pool.imap(_decode_task, tasks):
                    if bar is not None:
                        bar.update(len(result[1]) + len(result[2]))
                    yield result
        else:
            for task in tasks:
                result = _decode_task(task)
                if bar is not None:
                    bar.update(len(result[1]) + len(result[2]))
                yield result
    finally:
        if bar is not None:
            bar.close()


def _handle_bad(split: SplitSpec, bad: list[tuple[int, str]], on_corrupt: str) -> list[str]:
    if not bad:
        return []
    if on_corrupt != "skip":
        first = bad[0][1]
        more = f" ({len(bad) - 1} more undecodable files in this split)" if len(bad) > 1 else ""
        raise DataError(first + more)
    skipped = [split.describe(i) for i, _ in bad]
    shown = ", ".join(skipped[:SKIPPED_SHOWN]) + (" ..." if len(skipped) > SKIPPED_SHOWN else "")
    message = f"skipped {len(skipped)} undecodable image(s) of the {split.name} split: {shown}"
    logger.warning(message)
    warnings.warn(message, stacklevel=3)
    return skipped


def decode_split(split: SplitSpec, size: int, *, on_corrupt: str = "error", progress: bool = False) -> DecodedSplit:
    """Decode (or, for in-memory splits, resize) ``split`` to uint8 (N, C, size, size)."""
    if split.arrays is not None:
        return DecodedSplit(resize_arrays(split.arrays, size), split.labels.copy(), np.arange(len(split)))
    assert split.files is not None
    images = np.empty((len(split), 3, size, size), dtype=np.uint8)
    ok = np.ones(len(split), dtype=bool)
    bad: list[tuple[int, str]] = []
    for start, pixels, failures in _run_chunks(split.files, size, progress, f"decode {split.name}"):
        failed_positions = {pos for pos, _ in failures}
        chunk_len = len(pixels) + len(failures)
        good_positions = [start + p for p in range(chunk_len) if p not in failed_positions]
        images[good_positions] = pixels
        for pos, message in failures:
            ok[start + pos] = False
            bad.append((start + pos, message))
    bad.sort()
    skipped = _handle_bad(split, bad, on_corrupt)
    kept = np.flatnonzero(ok)
    if kept.size == 0:
        raise DataError(f"no decodable images in the {split.name} split ({len(split)} files, all broken)")
    if skipped:
        images = images[kept]
    return DecodedSplit(images, split.labels[kept], kept, skipped)


def find_undecodable(split: SplitSpec, *, progress: bool = False) -> list[int]:
    """Positions of the files of ``split`` that cannot be decoded (a full decode pass, pixels discarded)."""
    if split.files is None:
        return []
    bad: list[int] = []
    for start, _, failures in _run_chunks(split.files, None, progress, f"verify {split.name}"):
        bad.extend(start + pos for pos, _ in failures)
    return sorted(bad)


def resize_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, C, H, W) images as (N, C, size, size): unchanged if already so, else resize + centre crop."""
    height, width = images.shape[-2:]
    if height == size and width == size:
        return images
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    out = np.empty(images.shape[:2] + (size, size), dtype=np.uint8)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    for start in range(0, images.shape[0], _CHUNK):
        chunk = torch.from_numpy(images[start : start + _CHUNK]).float()
        resized = F.interpolate(chunk, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        cropped = resized[:, :, top : top + size, left : left + size]
        out[start : start + _CHUNK] = cropped.round().clamp(0, 255).to(torch.uint8).numpy()
    return out
