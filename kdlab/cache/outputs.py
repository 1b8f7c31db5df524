"""Which teacher outputs a run needs, and how they are laid out in a cache.

Per cached step the cache holds, for the ``rows`` network inputs of the
global batch (images x views, image-major like the Distiller's flattening):
the full logits (exact mode) or the top-k logits + indices + residual logit
(:mod:`kdlab.cache.soft_labels`), and/or the pooled embedding; fp16 by
default, fp32 on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from kdlab.config.teacher_source import TEACHER_MEAN
from kdlab.models.features import Features

from .errors import TeacherCacheError
from .soft_labels import compress_logits, reconstruct_logits
from .transfer import to_device

#: teacher outputs a cache can hold
CACHEABLE_FIELDS = ("logits", "embedding")


def required_outputs(terms: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{output: [term keys]}`` of the teacher outputs the loss terms read.

    Raises TeacherCacheError naming a term that needs the teacher but cannot
    be fed from a cache (``cacheable=False``: feature maps, full-resolution
    features, a teacher head run on the fly, ...).
    """
    needed: dict[str, list[str]] = {}
    for key, term in terms.items():
        if not getattr(term, "needs_teacher", False):
            continue
        if not getattr(term, "cacheable", False):
            raise TeacherCacheError(
                f"distill.teacher_cache is set, but loss term {key!r} ({type(term).name or type(term).__name__}) reads "
                f"teacher features a cache of logits/embeddings does not hold (it uses {sorted(term.uses)}); "
                "it needs a live teacher: remove distill.teacher_cache for this method"
            )
        fields = sorted(set(term.uses) & set(CACHEABLE_FIELDS)) or ["logits"]
        for field in fields:
            needed.setdefault(field, []).append(key)
    return needed


def outputs_per_teacher(
    terms: Mapping[str, Any], sources: Mapping[str, str], mean_keys: Sequence[str]
) -> tuple[dict[str, dict[str, list[str]]], dict[str, list[str]]]:
    """With several teachers: ``(cached, live)``.

    ``cached``: for each teacher that only cacheable terms read, ``{output: [term keys]}`` (a
    ``teacher: mean`` term reads the logits of every teacher in ``mean_keys``); ``live``: for each other
    teacher, the keys of the terms that need it live (feature maps, ...). ``sources`` maps a term key to
    the teacher it reads (a key, or ``"mean"``).
    """
    cached: dict[str, dict[str, list[str]]] = {}
    live: dict[str, list[str]] = {}
    for key, term in terms.items():
        if not getattr(term, "needs_teacher", False) or key not in sources:
            continue
        mean = sources[key] == TEACHER_MEAN
        fields = ["logits"] if mean else (sorted(set(term.uses) & set(CACHEABLE_FIELDS)) or ["logits"])
        for teacher in (mean_keys if mean else (sources[key],)):
            if not getattr(term, "cacheable", False):
                live.setdefault(teacher, []).append(key)
                continue
            for field in fields:
                cached.setdefault(teacher, {}).setdefault(field, []).append(key)
    for teacher in live:
        cached.pop(teacher, None)
    return cached, live


#: how teacher outputs may be stored: fp16 (half the bytes) or fp32 (a cached run equals a live one bit for bit)
STORE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class OutputLayout:
    """What a cache stores per row: ``fields``, for logits the class count and k (0: full logits), the dtype."""

    fields: tuple[str, ...]
    num_classes: int = 0
    top_k: int = 0
    embedding_dim: int = 0
    dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPES:
            raise TeacherCacheError(f"teacher outputs are stored as one of {STORE_DTYPES}, got {self.dtype!r}")

    def to_meta(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "logits": {"mode": "topk" if self.top_k else "full", "top_k": self.top_k, "num_classes": self.num_classes},
            "embedding_dim": self.embedding_dim,
            "store_dtype": self.dtype,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "OutputLayout":
        logits = meta.get("logits", {})
        return cls(tuple(meta["fields"]), int(logits.get("num_classes", 0)), int(logits.get("top_k", 0)),
                   int(meta.get("embedding_dim", 0)), str(meta.get("store_dtype", "float16")))

    def allocate(self, writer: Any, lead: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The output arrays of a new cache, each shaped ``lead + (per-row shape)``."""
        arrays = {}
        if "logits" in self.fields:
            if self.top_k:
                index_dtype = np.int16 if self.num_classes <= np.iinfo(np.int16).max else np.int32
                arrays["topk_logits"] = writer.array("topk_logits", lead + (self.top_k,), self.dtype)
                arrays["topk_index"] = writer.array("topk_index", lead + (self.top_k,), index_dtype)
                arrays["residual_logit"] = writer.array("residual_logit", lead, np.float32)
            else:
                arrays["logits"] = writer.array("logits", lead + (self.num_classes,), self.dtype)
        if "embedding" in self.fields:
            arrays["embedding"] = writer.array("embedding", lead + (self.embedding_dim,), self.dtype)
        return arrays

    def store(self, arrays: dict[str, np.ndarray], where: tuple[int, ...], features: Features) -> None:
        """Write one step's teacher outputs (``rows`` x ...) at ``where`` (e.g. (epoch, step))."""
        if "logits" in self.fields:
            logits = features.logits.detach().float()
            if self.top_k:
                values, indices, residual = compress_logits(logits, self.top_k)
                arrays["topk_logits"][where] = values.cpu().numpy()
                arrays["topk_index"][where] = indices.cpu().numpy()
                arrays["residual_logit"][where] = residual.cpu().numpy()
            else:
                arrays["logits"][where] = logits.cpu().numpy()
        if "embedding" in self.fields:
            arrays["embedding"][where] = features.embedding.detach().float().cpu().numpy()

    def load(self, read: Any, where: tuple, device: torch.device) -> Features:
        """Features (float32, on ``device``) of the rows at ``where``; ``read(name, where)`` gives a numpy copy."""
        logits: Optional[torch.Tensor] = None
        embedding: Optional[torch.Tensor] = None
        if "logits" in self.fields:
            if self.top_k:
                values = to_device(read("topk_logits", where), device)
                indices = to_device(read("topk_index", where), device)
                residual = to_device(read("residual_logit", where), device)
                logits = reconstruct_logits(values, indices, residual, self.num_classes)
            else:
                logits = to_device(read("logits", where), device).float()
        if "embedding" in self.fields:
            embedding = to_device(read("embedding", where), device).float()
        return Features(logits=logits, embedding=embedding, stages=[], preact_stages=[])  # type: ignore[arg-type]
