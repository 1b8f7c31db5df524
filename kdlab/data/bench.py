"""Throughput of the fast path against a plain torchvision reference pipeline."""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from .build import build_data
from .decisions import resolve_image_size
from .info import prepare_cache
from .sources import list_imagefolder, open_source

_WARMUP_BATCHES = 5
_REFERENCE_WORKERS = 2


def _images_in(batch: Any) -> int:
    images = batch["image"] if isinstance(batch, dict) else batch[0]
    return int(images.shape[0])


def _measure(epoch_iter: Callable[[int], Iterable], seconds: float) -> dict:
    """Images per second over ``seconds`` after a warm-up of a few batches, restarting epochs as needed."""

    def batches() -> Iterator:
        epoch = 0
        while True:
            produced = False
            for batch in epoch_iter(epoch):
                produced = True
                yield batch
            if not produced:
                raise RuntimeError("the benchmarked stream produced no batch")
            epoch += 1

    stream = batches()
    for _ in range(_WARMUP_BATCHES):
        next(stream)
    images = count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        images += _images_in(next(stream))
        count += 1
    elapsed = time.perf_counter() - started
    return {"ips": images / elapsed, "batches": count, "images": images, "seconds": elapsed}


def _reference_imagefolder(cfg: Any, size: int, batch_size: int, seconds: float, mean, std) -> dict:
    listing = list_imagefolder(cfg.root)
    extract_seconds = 0.0
    temp_dir = None
    if listing.is_zip:
        started = time.perf_counter()
        temp_dir = tempfile.mkdtemp(prefix="kdlab-bench-")
        with zipfile.ZipFile(listing.container) as archive:
            members = [n for n in archive.namelist() if n.startswith(f"{listing.prefix}train/")]
            archive.extractall(temp_dir, members=members)
        extract_seconds = time.perf_counter() - started
        train_dir = Path(temp_dir) / listing.prefix / "train"
    else:
        train_dir = listing.container / listing.prefix / "train"
    try:
        transform = T.Compose([
            T.RandomCrop(size, padding=cfg.crop_padding),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(list(mean), list(std)),
        ])
        dataset = datasets.ImageFolder(str(train_dir), transform=transform)
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=_REFERENCE_WORKERS, drop_last=True
        )
        result = _measure(lambda epoch: loader, seconds)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    result["extract_seconds"] = extract_seconds
    result["name"] = (
        f"torchvision ImageFolder + RandomCrop({size}, {cfg.crop_padding}) + flip, {_REFERENCE_WORKERS} workers"
    )
    return result


def bench_data(cfg: Any, *, seconds: float = 20.0, batch_size: int = 64) -> dict:
    """Training images/s (augmentation included) of the fast path and of a reference pipeline, same run.

    The reference is torchvision's ImageFolder over the extracted folder (the
    zip is extracted to a temporary folder first) with RandomCrop + flip +
    ToTensor + Normalize in a DataLoader with 2 workers; for non-folder
    datasets it is kdlab's standard path with 2 workers. Each path is timed
    for ``seconds`` after a warm-up; the fast path's one-time decode/caching
    and the zip extraction are timed separately.
    """
    finite = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
    if not (finite and seconds > 0):
        raise ValueError(f"seconds must be a finite number > 0 (a timed loop of inf or nan never ends), "
                         f"got {seconds!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    base = dataclasses.replace(cfg, batch_size=batch_size, augment="crop_flip", views="single", sampler="random")
    fast_cfg = dataclasses.replace(base, pipeline="fast")

    started = time.perf_counter()
    cache_report = prepare_cache(fast_cfg, progress=False)
    decode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    bundle = build_data(fast_cfg, seed=0)
    load_seconds = time.perf_counter() - started
    fast = _measure(lambda epoch: bundle.train.epoch(epoch), seconds)
    from_cache = all(split.get("from_cache", False) for split in cache_report["splits"].values() if split.get("cached"))

    if cfg.name == "imagefolder":
        size = resolve_image_size(cfg, open_source(cfg))
        reference = _reference_imagefolder(base, size, batch_size, seconds, bundle.mean, bundle.std)
    else:
        standard = build_data(dataclasses.replace(base, pipeline="standard", num_workers=_REFERENCE_WORKERS), seed=0)
        reference = _measure(lambda epoch: standard.train.epoch(epoch), seconds)
        reference["extract_seconds"] = 0.0
        reference["name"] = f"kdlab standard path, {_REFERENCE_WORKERS} workers"

    return {
        "fast_ips": fast["ips"],
        "reference_ips": reference["ips"],
        "ratio": fast["ips"] / reference["ips"] if reference["ips"] else float("inf"),
        "fast_decode_seconds": decode_seconds,
        "fast_decode_from_cache": from_cache,
        "fast_load_seconds": load_seconds,
        "reference_extract_seconds": reference["extract_seconds"],
        "reference": reference["name"],
        "batch_size": batch_size,
        "seconds": seconds,
        "train_size": bundle.train_size,
        "image_size": bundle.image_size,
        "fast_batches": fast["batches"],
        "reference_batches": reference["batches"],
        "torch_threads": torch.get_num_threads(),
    }
