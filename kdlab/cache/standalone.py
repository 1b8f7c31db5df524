"""Building a teacher cache from a config alone (``kdlab cache-teacher``, the throughput benchmark); one per teacher
with several (``teachers:``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from kdlab.config import Config, ConfigError

from .build import build_teacher_cache
from .errors import TeacherCacheError, TeacherCacheMismatchError
from .key import key_differences
from .outputs import CACHEABLE_FIELDS, required_outputs
from .soft_labels import resolve_top_k
from .storage import META_FILE, cache_exists
from .teacher_cache import TeacherCache
from .use import cache_epochs, cache_store_dtype, cache_top_k, replayable_stream, run_cache_key


def _run_prerequisites(cfg: Config) -> None:
    """Train what the terms need before they can be built (SSKD: the teacher's head), as ``kdlab train`` would."""
    from kdlab.engine.trainer import Trainer
    from kdlab.methods.build import prerequisites

    for need in prerequisites(cfg):
        if Path(need.produces).exists():
            continue
        resume = "auto"  # continues an interrupted one; starts fresh in an empty folder
        if not Trainer(need.config).fit(resume=resume).completed:
            raise ConfigError(f"{need.description} stopped early; run the same command again to continue")


def _terms_outputs(cfg: Config, data: Any, teacher: Any, device: torch.device) -> dict[str, list[str]]:
    """The teacher outputs the config's loss terms read (the Distiller a run would build is built to ask it)."""
    return required_outputs(_distiller(cfg, data, teacher, device).terms)


def _stale_reasons(cache: TeacherCache, key: dict[str, Any], fields: Sequence[str], epochs: int,
                   top_k: Optional[int], store_dtype: Optional[str]) -> list[str]:
    reasons = key_differences(cache.key, key)
    missing = sorted(set(fields) - set(cache.layout.fields))
    if missing:
        reasons.append(f"outputs: cache has {list(cache.layout.fields)}, asked for {sorted(fields)}")
    if cache.epochs < epochs:
        reasons.append(f"epochs: cache has {cache.epochs}, asked for {epochs}")
    if top_k is not None and cache.layout.num_classes:
        wanted = resolve_top_k(top_k, cache.layout.num_classes)
        if wanted != cache.layout.top_k:
            have = cache.layout.top_k or "full logits"
            reasons.append(f"top_k: cache has {have}, asked for {wanted or 'full logits'}")
    if store_dtype is not None and store_dtype != cache.layout.dtype:
        reasons.append(f"store dtype: cache has {cache.layout.dtype}, asked for {store_dtype}")
    return reasons


def build_cache_from_config(
    cfg: Config,
    path: Optional[str | Path] = None,
    *,
    epochs: Optional[int] = None,
    top_k: Optional[int] = None,
    fields: Optional[Sequence[str]] = None,
    store_dtype: Optional[str] = None,
    force: bool = False,
    progress: bool = True,
) -> tuple[TeacherCache, bool]:
    """Make sure a cache for ``cfg``'s teacher, data and schedule exists at ``path``; returns (cache, built now).

    ``path`` defaults to ``distill.teacher_cache``; ``epochs`` to
    ``distill.teacher_cache_epochs`` or ``trainer.epochs``; ``fields`` to the
    outputs the config's loss terms read; ``store_dtype`` to float16 (an
    existing cache of the other dtype is reused unless a dtype is asked for). An existing cache that fits is
    reused; one that does not is refused (TeacherCacheMismatchError listing
    what differs) unless ``force``, which rebuilds it. A config with several teachers:
    :func:`build_caches_from_config`.
    """
    from kdlab.data import build_data
    from kdlab.engine.builders import build_teacher, channels_last, resolve_device, with_views

    if cfg.teachers:
        raise ConfigError(
            f"this config has several teachers (teachers: {', '.join(cfg.teachers)}): each gets its own cache, "
            "built by build_caches_from_config (`kdlab cache-teacher` calls it)"
        )
    cfg = with_views(cfg)
    target = _cache_target(path, cfg)
    epochs = int(epochs or cache_epochs(cfg))
    top_k = top_k if top_k is not None else cache_top_k(cfg)
    if target.exists() and not cache_exists(target) and any(target.iterdir()):
        raise TeacherCacheError(f"{target} exists and is not a teacher cache; choose another path")
    device = resolve_device(cfg.trainer.device)
    data = build_data(cfg.data, seed=cfg.trainer.seed, device=device, channels_last=channels_last(cfg),
                      progress=progress)
    teacher = build_teacher(cfg, data.num_classes, data.in_chans, data.mean, data.std)
    if teacher is None:
        raise ConfigError("a teacher cache needs a teacher: set teacher.name and teacher.checkpoint")
    teacher.to(device, memory_format=_memory_format(cfg))
    if fields is None:
        fields = sorted(_terms_outputs(cfg, data, teacher, device)) or ["logits"]
    _check_fields(fields)
    return _fit_or_build(target, cfg, data, teacher, fields, epochs=epochs, top_k=top_k, store_dtype=store_dtype,
                         force=force, device=device, progress=progress)


def build_caches_from_config(
    cfg: Config,
    path: Optional[str | Path] = None,
    *,
    epochs: Optional[int] = None,
    top_k: Optional[int] = None,
    fields: Optional[Sequence[str]] = None,
    store_dtype: Optional[str] = None,
    force: bool = False,
    progress: bool = True,
) -> tuple[dict[str, tuple[TeacherCache, bool]], dict[str, list[str]]]:
    """Several teachers (``teachers:``): every teacher a cache can feed gets its cache at ``path/<teacher key>``.

    Returns ``({key: (cache, built now)}, {key: [terms]})``: the cached teachers, and those left live
    because a term reads features a cache does not hold (a training run runs them on the replayed
    images). Each cache is keyed, reused, refused or rebuilt (``force``) exactly as
    :func:`build_cache_from_config` does for one teacher; ``fields`` (default: what each teacher's terms read)
    applies to every cached teacher. Another multi-teacher run with the same teachers, data and schedule
    reads them; so does a single-teacher run pointed at one of the subfolders.
    """
    from kdlab.data import build_data
    from kdlab.config.teacher_source import single_teacher_view
    from kdlab.engine.builders import resolve_device, channels_last, with_views
    from kdlab.engine.teacher import build_teachers

    from .use import check_multi_cache_root, teacher_cache_dir, teacher_caches_plan

    if not cfg.teachers:
        raise ConfigError("build_caches_from_config is for several teachers (teachers:); use build_cache_from_config")
    cfg = with_views(cfg)
    root = _cache_target(path, cfg)
    check_multi_cache_root(root)
    epochs = int(epochs or cache_epochs(cfg))
    top_k = top_k if top_k is not None else cache_top_k(cfg)
    if fields is not None:
        _check_fields(fields)
    device = resolve_device(cfg.trainer.device)
    data = build_data(cfg.data, seed=cfg.trainer.seed, device=device, channels_last=channels_last(cfg),
                      progress=progress)
    teachers = build_teachers(cfg, data.num_classes, data.in_chans, data.mean, data.std)
    teachers.to(device, memory_format=_memory_format(cfg))
    cached, live = teacher_caches_plan(_distiller(cfg, data, teachers, device))
    results: dict[str, tuple[TeacherCache, bool]] = {}
    for key, needed in cached.items():
        target = teacher_cache_dir(root, key)
        if target.exists() and not cache_exists(target) and any(target.iterdir()):
            raise TeacherCacheError(f"{target} exists and is not a teacher cache; choose another path")
        wanted = sorted(needed) if fields is None else list(fields)
        results[key] = _fit_or_build(
            target, single_teacher_view(cfg, key), data, teachers[key], wanted, epochs=epochs, top_k=top_k,
            store_dtype=store_dtype, force=force, device=device, progress=progress,
        )
    return results, live


def _cache_target(path: Optional[str | Path], cfg: Config) -> Path:
    target = path if path is not None else cfg.distill.teacher_cache
    if not target:
        raise ConfigError("no cache path: set distill.teacher_cache=PATH or pass --out PATH")
    return Path(target)


def _memory_format(cfg: Config) -> torch.memory_format:
    from kdlab.engine.builders import channels_last

    return torch.channels_last if channels_last(cfg) else torch.contiguous_format


def _check_fields(fields: Sequence[str]) -> None:
    unknown = sorted(set(fields) - set(CACHEABLE_FIELDS))
    if unknown:
        raise ConfigError(f"--fields {','.join(fields)}: {unknown} cannot be cached; choose from {CACHEABLE_FIELDS}")


def _distiller(cfg: Config, data: Any, teacher: Any, device: torch.device) -> Any:
    """The Distiller a run of ``cfg`` would build (after the terms' prerequisites), to ask what it reads."""
    from kdlab.engine.builders import build_student
    from kdlab.methods.build import build_distiller

    _run_prerequisites(cfg)
    student = build_student(cfg, data.num_classes, data.in_chans).to(device)
    return build_distiller(
        cfg, student, teacher, num_classes=cfg.model.num_classes or data.num_classes, train_size=data.train_size,
        image_size=data.image_size, in_chans=data.in_chans, steps_per_epoch=data.train.steps_per_epoch, device=device,
    )


def _fit_or_build(target: Path, cfg: Config, data: Any, teacher: Any, fields: Sequence[str], *, epochs: int,
                  top_k: Optional[int], store_dtype: Optional[str], force: bool, device: torch.device,
                  progress: bool) -> tuple[TeacherCache, bool]:
    """The cache at ``target`` if it fits ``cfg`` (its only teacher), else refused or (``force``) rebuilt."""
    from kdlab.engine.builders import autocast_for

    key = run_cache_key(cfg, data)
    if cache_exists(target):
        reasons = _stale_reasons(TeacherCache(target), key, fields, epochs, top_k, store_dtype)
        if not reasons:
            return TeacherCache(target), False
        if not force:
            lines = "\n  - ".join(reasons)
            raise TeacherCacheMismatchError(
                f"teacher cache {target} exists but does not fit:\n  - {lines}\npass --force to rebuild it"
            )
        if not (target / META_FILE).is_file():
            raise TeacherCacheError(f"{target} does not look like a teacher cache; refusing to delete it")
        shutil.rmtree(target)
    elif target.exists():
        target.rmdir()  # an empty folder left for the cache
    cache = build_teacher_cache(
        target, key=key, stream=replayable_stream(data), teacher=teacher, fields=fields, epochs=epochs, top_k=top_k,
        store_dtype=store_dtype or cache_store_dtype(cfg), autocast=autocast_for(cfg, device), progress=progress,
    )
    return cache, True
