"""How a run gets its teacher outputs from a cache: check, build if missing, replay."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch

from kdlab.config import Config
from kdlab.data.fast import FastTrainStream
from kdlab.data.standard import StandardTrainStream
from kdlab.data.types import DataBundle, TrainStream

from .build import ReplayableStream, build_teacher_cache
from .errors import TeacherCacheError
from .key import cache_key
from .outputs import outputs_per_teacher, required_outputs
from .replay import CachedStandardTeacherStream, CachedTeacherStream
from .storage import cache_exists
from .teacher_cache import TeacherCache
from .teacher_caches import TeacherCacheSet


def replayable_stream(bundle: DataBundle) -> ReplayableStream:
    """The bundle's training stream, which a cache can replay (fast or standard path)."""
    if not isinstance(bundle.train, (FastTrainStream, StandardTrainStream)):
        raise TeacherCacheError(
            "distill.teacher_cache replays the fast or the standard data path; this run's training stream is "
            f"{type(bundle.train).__name__}"
        )
    return bundle.train


def run_cache_key(cfg: Config, bundle: DataBundle) -> dict[str, Any]:
    """The cache key of this run's setup (schedule seed: the run's data seed)."""
    stream = replayable_stream(bundle)
    pipeline = "fast" if isinstance(stream, FastTrainStream) else "standard"
    return cache_key(cfg, bundle, pipeline=pipeline, seed=stream.seed, global_batch=stream.planner.global_batch)


def cached_stream(cache: TeacherCache | TeacherCacheSet, stream: ReplayableStream, device: torch.device) -> TrainStream:
    """``stream``'s replay of ``cache`` (or of several teachers' caches): the cache's schedule, the cached outputs."""
    if isinstance(stream, FastTrainStream):
        return CachedTeacherStream(cache, stream, device)
    return CachedStandardTeacherStream(cache, stream, device)


def cache_epochs(cfg: Config) -> int:
    """Epochs an automatically built cache holds: ``distill.teacher_cache_epochs`` if set, else trainer.epochs."""
    return int(cfg.distill.teacher_cache_epochs or cfg.trainer.epochs)


def cache_top_k(cfg: Config) -> Optional[int]:
    """``distill.teacher_cache_top_k`` (None: automatic, 0: full logits)."""
    return cfg.distill.teacher_cache_top_k


def cache_store_dtype(cfg: Config) -> str:
    """``distill.teacher_cache_dtype``: float16 (default) or float32 (exact replay)."""
    return cfg.distill.teacher_cache_dtype


def ensure_teacher_cache(
    path: str | Path,
    *,
    cfg: Config,
    bundle: DataBundle,
    teacher: Any,
    fields: list[str],
    autocast: Any = None,
    progress: bool = False,
) -> TeacherCache:
    """Open the cache at ``path``, building it first if it does not exist (rank 0 builds, the others wait)."""
    from kdlab.engine.distributed import main_first

    path = Path(path)
    with main_first():  # rank 0 builds a missing cache; the other ranks then find it finished
        if not cache_exists(path):
            if teacher is None:
                raise TeacherCacheError(f"teacher cache {path} does not exist and there is no teacher to build it")
            build_teacher_cache(
                path, key=run_cache_key(cfg, bundle), stream=replayable_stream(bundle), teacher=teacher, fields=fields,
                epochs=cache_epochs(cfg), top_k=cache_top_k(cfg), store_dtype=cache_store_dtype(cfg),
                autocast=autocast, progress=progress,
            )
    return TeacherCache(path)


def use_teacher_cache(cfg: Config, bundle: DataBundle, distiller: Any, device: torch.device) -> DataBundle:
    """``bundle`` whose training batches come from the teacher cache at ``distill.teacher_cache``.

    The cache is built first when missing. Raises TeacherCacheError (a
    ConfigError: exit code 2) when a loss term cannot use a cache, when the
    cache was built for another teacher/data/augmentation (the message lists
    the differences), lacks an output the terms need, or holds fewer epochs
    than ``trainer.epochs``. The returned bundle's data order and augmentation
    are the cache's (its seed), whatever ``trainer.seed`` is.
    """
    if cfg.teachers:
        return use_teacher_caches(cfg, bundle, distiller, device)
    path = Path(cfg.distill.teacher_cache)
    needed = required_outputs(distiller.terms)
    if not needed:
        return bundle  # no term reads the teacher: nothing to replace
    from kdlab.engine.builders import autocast_for

    cache = ensure_teacher_cache(
        path, cfg=cfg, bundle=bundle, teacher=distiller.teacher, fields=sorted(needed),
        autocast=autocast_for(cfg, device), progress=cfg.trainer.progress != "none",
    )
    cache.check_usable(run_cache_key(cfg, bundle), needed, cfg.trainer.epochs)
    _announce(cfg, cache)
    return dataclasses.replace(bundle, train=cached_stream(cache, replayable_stream(bundle), device))


def teacher_cache_dir(root: str | Path, key: str) -> Path:
    """Where teacher ``key`` of a multi-teacher run keeps its cache: a subfolder of ``distill.teacher_cache``."""
    return Path(root) / key


def check_multi_cache_root(root: Path) -> None:
    """A multi-teacher cache folder holds one cache per teacher in subfolders; it is not itself a cache."""
    if cache_exists(root):
        raise TeacherCacheError(
            f"distill.teacher_cache={root} is one teacher's cache, but this run has several teachers, whose caches "
            f"go in its subfolders ({root}/<teacher key>); choose another folder"
        )


def teacher_caches_plan(distiller: Any) -> tuple[dict[str, dict[str, list[str]]], dict[str, list[str]]]:
    """``(cached, live)`` of a multi-teacher Distiller (see :func:`kdlab.cache.outputs.outputs_per_teacher`).

    Raises TeacherCacheError when no teacher can be fed from a cache.
    """
    cached, live = outputs_per_teacher(distiller.terms, distiller.sources, distiller.teacher.mean_keys)
    if not cached and live:
        terms = sorted({term for keys in live.values() for term in keys})
        raise TeacherCacheError(
            f"distill.teacher_cache is set, but no teacher can be fed from a cache: loss term(s) {', '.join(terms)} "
            "read teacher features a cache of logits/embeddings does not hold; remove distill.teacher_cache"
        )
    return cached, live


def use_teacher_caches(cfg: Config, bundle: DataBundle, distiller: Any, device: torch.device) -> DataBundle:
    """Several teachers: ``bundle`` whose batches carry ``{teacher key: features}`` from per-teacher caches.

    Each teacher that only cacheable terms read has its own cache at ``<distill.teacher_cache>/<key>``
    (keyed and checked as if it were the run's only teacher), built when missing; a teacher that a
    feature term reads stays live, on the replayed images. All caches must share one schedule.
    """
    from kdlab.config.teacher_source import single_teacher_view
    from kdlab.engine.builders import autocast_for

    root = Path(cfg.distill.teacher_cache)
    check_multi_cache_root(root)
    cached, live = teacher_caches_plan(distiller)
    if not cached:
        return bundle  # no term reads a teacher
    stream = replayable_stream(bundle)
    paths = {key: teacher_cache_dir(root, key) for key in cached}
    built = {key: TeacherCache(path) for key, path in paths.items() if cache_exists(path)}
    other_seeds = sorted({f"{key} (seed {cache.seed})" for key, cache in built.items() if cache.seed != stream.seed})
    missing = [key for key in cached if key not in built]
    if missing and other_seeds:
        raise TeacherCacheError(
            f"the caches of {', '.join(missing)} are missing and would be built on this run's schedule (seed "
            f"{stream.seed}), but those of {', '.join(other_seeds)} replay another; build them all on one schedule "
            f"(`kdlab cache-teacher CONFIG trainer.seed=SEED`)"
        )
    caches: dict[str, TeacherCache] = {}
    for key, fields in cached.items():
        view = single_teacher_view(cfg, key)
        cache = ensure_teacher_cache(
            paths[key], cfg=view, bundle=bundle, teacher=distiller.teacher[key], fields=sorted(fields),
            autocast=autocast_for(cfg, device), progress=cfg.trainer.progress != "none",
        )
        cache.check_usable(run_cache_key(view, bundle), fields, cfg.trainer.epochs)
        caches[key] = cache
    combined = TeacherCacheSet(caches, root)
    for key, cache in caches.items():
        _announce(cfg, cache, f"teacher {key}: ")
    for key, terms in live.items():
        _say(cfg, f"teacher {key}: live (loss term(s) {', '.join(terms)} read features a cache does not hold)")
    return dataclasses.replace(bundle, train=cached_stream(combined, stream, device))  # type: ignore[arg-type]


def _say(cfg: Config, line: str) -> None:
    from kdlab.engine.distributed import is_main_process
    from kdlab.engine.progress import say

    if is_main_process():
        say(cfg.trainer.progress, line)


def _announce(cfg: Config, cache: TeacherCache, prefix: str = "") -> None:
    """One line (rank 0, unless progress is off): where the teacher outputs come from, and whose schedule."""
    schedule = f"seed {cache.seed}"
    if cache.seed != cfg.trainer.seed:
        schedule += f"; trainer.seed={cfg.trainer.seed} still seeds the initialisation"
    _say(cfg, f"{prefix}teacher outputs from cache {cache.path} ({cache.epochs} epoch(s), "
              f"{', '.join(cache.layout.fields)}); data order and augmentation: the cache's {schedule}")
