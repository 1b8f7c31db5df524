"""Building a teacher cache from a config alone (``kdlab cache-teacher``, the throughput benchmark)."""

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
        resume = "auto" if (Path(need.config.trainer.out_dir) / "checkpoints" / "last.pt").exists() else None
        if not Trainer(need.config).fit(resume=resume).completed:
            raise ConfigError(f"{need.description} stopped early; run the same command again to continue")


def _terms_outputs(cfg: Config, data: Any, teacher: Any, device: torch.device) -> dict[str, list[str]]:
    """The teacher outputs the config's loss terms read (the Distiller a run would build is built to ask it)."""
    from kdlab.engine.builders import build_student
    from kdlab.methods.build import build_distiller

    _run_prerequisites(cfg)
    student = build_student(cfg, data.num_classes, data.in_chans).to(device)
    distiller = build_distiller(
        cfg, student, teacher, num_classes=cfg.model.num_classes or data.num_classes, train_size=data.train_size,
        image_size=data.image_size, in_chans=data.in_chans, steps_per_epoch=data.train.steps_per_epoch, device=device,
    )
    return required_outputs(distiller.terms)


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
    what differs) unless ``force``, which rebuilds it.
    """
    from kdlab.data import build_data
    from kdlab.engine.builders import autocast_for, build_teacher, channels_last, resolve_device, with_views

    cfg = with_views(cfg)
    target = path if path is not None else cfg.distill.teacher_cache
    if not target:
        raise ConfigError("no cache path: set distill.teacher_cache=PATH or pass --out PATH")
    target = Path(target)
    epochs = int(epochs or cache_epochs(cfg))
    top_k = top_k if top_k is not None else cache_top_k(cfg)
    if target.exists() and not cache_exists(target) and any(target.iterdir()):
        raise TeacherCacheError(f"{target} exists and is not a teacher cache; choose another path")
    device = resolve_device(cfg.trainer.device)
    memory_format = torch.channels_last if channels_last(cfg) else torch.contiguous_format
    data = build_data(cfg.data, seed=cfg.trainer.seed, device=device, channels_last=channels_last(cfg),
                      progress=progress)
    teacher = build_teacher(cfg, data.num_classes, data.in_chans, data.mean, data.std)
    if teacher is None:
        raise ConfigError("a teacher cache needs a teacher: set teacher.name and teacher.checkpoint")
    teacher.to(device, memory_format=memory_format)
    if fields is None:
        fields = sorted(_terms_outputs(cfg, data, teacher, device)) or ["logits"]
    unknown = sorted(set(fields) - set(CACHEABLE_FIELDS))
    if unknown:
        raise ConfigError(f"--fields {','.join(fields)}: {unknown} cannot be cached; choose from {CACHEABLE_FIELDS}")
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
