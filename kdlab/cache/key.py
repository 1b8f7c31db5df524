"""What a teacher-output cache is valid for: teacher, dataset, augmentation and schedule seed.

The key is a small JSON-able dict stored in the cache's ``meta.json``. A run
may use a cache only if every entry except the schedule seed equals its own
(the cache's seed decides the data order and augmentation of every run that
uses it; the run's ``trainer.seed`` still decides the initialisation).
"""

from __future__ import annotations

from typing import Any

from kdlab.config import Config, flatten_config
from kdlab.data.training_set import label_noise_spec
from kdlab.data.types import DataBundle
from kdlab.engine.checkpoint import file_sha256

#: key entries a run may differ in and still use the cache
RUN_MAY_DIFFER = frozenset({"schedule.seed"})


def teacher_identity(cfg: Config) -> dict[str, Any]:
    """The teacher as the cache sees it: architecture, options, input statistics and the weights' hash."""
    from kdlab.engine.builders import resolve_teacher_source, teacher_precision

    name, checkpoint, kwargs, classes = resolve_teacher_source(cfg)
    return {
        "name": name,
        "kwargs": dict(sorted(kwargs.items())),
        "num_classes": classes,
        "mean": None if cfg.teacher.mean is None else [float(v) for v in cfg.teacher.mean],
        "std": None if cfg.teacher.std is None else [float(v) for v in cfg.teacher.std],
        "embedding_only": bool(cfg.teacher.embedding_only),
        "precision": teacher_precision(cfg),  # a bf16 teacher's outputs differ from an fp32 one's
        "checkpoint_sha256": file_sha256(checkpoint),  # type: ignore[arg-type]
    }


def cache_key(cfg: Config, bundle: DataBundle, *, pipeline: str, seed: int, global_batch: int) -> dict[str, Any]:
    """The key of the cache this run would build (``seed``: the schedule's seed)."""
    data = cfg.data
    augmentation: dict[str, Any] = {
        "pipeline": pipeline,
        "augment": data.augment,
        "crop_padding": data.crop_padding,
        "views": data.views,
        "num_views": data.num_views if data.views == "multi" else 1,
        "image_size": bundle.image_size,
        "mean": [float(v) for v in bundle.mean],
        "std": [float(v) for v in bundle.std],
        "global_batch": global_batch,
        "sampler": data.sampler,
    }
    if data.sampler == "knn":
        augmentation.update(
            knn_anchors=data.knn_anchors,
            knn_neighbours=data.knn_neighbours,
            knn_pool=data.knn_pool,
            knn_index_sha256=file_sha256(data.knn_index) if data.knn_index else None,
        )
    data_key: dict[str, Any] = {"name": data.name, "fingerprint": bundle.fingerprint, "train_size": bundle.train_size}
    # the fingerprint covers data.subset / data.per_class (the sample list) and data.label_noise; the noise is
    # named too, so a refused cache says why (absent without noise: caches built before the key stay valid)
    noise = label_noise_spec(data)
    if noise is not None:
        data_key["label_noise"] = noise.key()
    return {
        "teacher": teacher_identity(cfg),
        "data": data_key,
        "augmentation": augmentation,
        "schedule": {"seed": seed},
    }




def key_differences(cached: dict[str, Any], wanted: dict[str, Any], ignore: frozenset[str] = frozenset()) -> list[str]:
    """Human-readable ``entry: cache has X, this run has Y`` lines, one per differing entry."""
    a, b = flatten_config(cached), flatten_config(wanted)
    lines = []
    for entry in sorted(set(a) | set(b)):
        if entry in ignore or a.get(entry) == b.get(entry):
            continue
        cached_value, run_value = _short(a.get(entry, "(absent)")), _short(b.get(entry, "(absent)"))
        lines.append(f"{entry}: cache has {cached_value}, this run has {run_value}")
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
