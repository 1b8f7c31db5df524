"""Inspecting a dataset without training: :func:`dataset_info` and :func:`prepare_cache`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .cache import SKIPPED_SHOWN, default_cache_dir, load_or_decode
from .decisions import bundle_fingerprint, resolve_image_size
from .sources import list_imagefolder, open_source
from .training_set import label_noise_spec, training_selection


def _split_counts(labels: np.ndarray) -> dict[str, int]:
    return {"samples": int(labels.shape[0]), "classes": int(np.unique(labels).size)}


def dataset_info(cfg: Any) -> dict:
    """Splits, sample and class counts of the dataset, without decoding any image."""
    if cfg.name == "imagefolder":
        listing = list_imagefolder(cfg.root)
        classes = sorted(listing.splits["train"])
        splits = {
            split: {
                "samples": sum(len(images) for images in listing.splits[split].values()),
                "classes": len(listing.splits[split]),
            }
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
        "per_class": getattr(cfg, "per_class", None),
        "label_noise": noise.key() if (noise := label_noise_spec(cfg)) is not None else None,
        "splits": splits,
    }


def prepare_cache(cfg: Any, *, progress: bool = True) -> dict:
    """Decode the training (subset / per_class) and eval splits into the fast-path cache; report what is there."""
    source = open_source(cfg)
    size = resolve_image_size(cfg, source)
    selection = training_selection(cfg, source)  # the samples a run decodes: subset, then per_class
    train_split = source.train.select(selection) if selection is not None else source.train
    cache_root = default_cache_dir(cfg)
    report: dict[str, Any] = {
        "name": source.name,
        "root": source.root,
        "cache_dir": str(cache_root),
        "image_size": size,
        "fingerprint": bundle_fingerprint(source, selection, size, label_noise_spec(cfg)),
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
