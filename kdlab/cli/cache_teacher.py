"""``kdlab cache-teacher CONFIG [overrides]``: run the teacher once, store what the losses need."""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from kdlab.cli.common import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache-teacher",
        help="run the teacher once over a replayable augmentation schedule and cache its outputs",
        description=(
            "Build the teacher-output cache of a distillation config (at distill.teacher_cache, or --out). "
            "Student runs with distill.teacher_cache set then replay the cached schedule instead of running the "
            "teacher; their data order and augmentation come from the cache's seed (the seed of this config). "
            "With several teachers (teachers:) each teacher that a cache can feed gets its own, in the subfolder "
            "<cache>/<teacher key>; a teacher that a feature term reads is left to run live."
        ),
    )
    add_config_args(p)
    p.add_argument("--out", metavar="PATH", help="cache folder (default: distill.teacher_cache of the config)")
    p.add_argument(
        "--epochs", type=int, help="epochs to cache (default: distill.teacher_cache_epochs or trainer.epochs)"
    )
    p.add_argument(
        "--top-k", type=int, metavar="K",
        help="keep the top K logits per image (0: full logits; default: full up to 100 classes, else 10)",
    )
    p.add_argument("--fields", help="teacher outputs to keep: logits, embedding or logits,embedding "
                                    "(default: what the config's loss terms read)")
    p.add_argument(
        "--store-dtype", choices=("float16", "float32"),
        help="dtype of the stored outputs (default float16; float32: cached runs equal live runs bit for bit)",
    )
    p.add_argument("--force", action="store_true", help="rebuild a cache at the path that does not fit this config")
    p.add_argument("--json", action="store_true", help="print the cache summary as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.cache import build_cache_from_config
    from kdlab.config import ConfigError

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    if args.top_k is not None and args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0 (0: full logits), got {args.top_k}")
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    cfg = config_from_args(args)
    _check_cache_folder(args.out, cfg)
    if cfg.teachers:
        return _run_several(args, cfg, fields)
    cache, built = build_cache_from_config(
        cfg, args.out, epochs=args.epochs, top_k=args.top_k, fields=fields, store_dtype=args.store_dtype,
        force=args.force,
        progress=not args.json and cfg.trainer.progress != "none",
    )
    summary = {**cache.describe(), "built": built}
    if args.json:
        print(json.dumps(summary))
    else:
        print(_line(summary))
    return 0


def _check_cache_folder(out: Optional[str], cfg: Any) -> None:
    """The cache path is a folder or a new path: a file, device or pipe there is one line, exit 2, before any work."""
    from kdlab.checkpoint_io import check_output_folder

    target = out or cfg.distill.teacher_cache
    if target:
        check_output_folder(target, "--out" if out else "distill.teacher_cache")


def _line(summary: dict) -> str:
    state = "built" if summary["built"] else "up to date, reused"
    return (f"teacher cache {summary['path']} ({state}): {summary['epochs']} epoch(s) x {summary['steps_per_epoch']} "
            f"steps x {summary['global_batch']} images, {', '.join(summary['fields'])} "
            f"(logits: {summary['logits']}), "
            f"seed {summary['seed']}, {summary['bytes'] / 2**20:.1f} MiB")


def _run_several(args: argparse.Namespace, cfg: Any, fields: Optional[list[str]]) -> int:
    """Several teachers: one cache per teacher a cache can feed; one line (or JSON entry) per teacher."""
    from kdlab.cache.standalone import build_caches_from_config

    caches, live = build_caches_from_config(
        cfg, args.out, epochs=args.epochs, top_k=args.top_k, fields=fields, store_dtype=args.store_dtype,
        force=args.force, progress=not args.json and cfg.trainer.progress != "none",
    )
    summaries = {key: {**cache.describe(), "built": built} for key, (cache, built) in caches.items()}
    if args.json:
        print(json.dumps({"teachers": summaries, "live": live}))
        return 0
    for key, summary in summaries.items():
        print(f"{key}: {_line(summary)}")
    for key, terms in live.items():
        print(f"{key}: no cache, runs live (loss term(s) {', '.join(terms)} read features a cache does not hold)")
    return 0
