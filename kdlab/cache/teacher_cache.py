"""Reading a finished teacher-output cache: its schedule, its teacher outputs, and whether a run may use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kdlab.models.features import Features

from .errors import TeacherCacheError, TeacherCacheMismatchError
from .key import RUN_MAY_DIFFER, key_differences
from .outputs import OutputLayout
from .storage import CacheFiles
from .transfer import to_device

AUG_PREFIX = "aug_"


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype):
        raise TeacherCacheError(f"teacher cache: unknown augmentation parameter dtype {name!r}")
    return dtype


class TeacherCache:
    """A finished cache at ``path``, memory-mapped.

    Arrays are indexed ``[epoch, step, column]`` (per image of the global
    batch: sample index, augmentation parameters) or ``[epoch, step, row]``
    (per network input, ``row = column * views + view``: checksums and teacher
    outputs).
    """

    def __init__(self, path: str | Path) -> None:
        self.files = CacheFiles(path)
        self.path = self.files.path
        meta = self.files.meta
        try:
            self.key: dict[str, Any] = meta["key"]
            self.epochs = int(meta["epochs"])
            self.steps_per_epoch = int(meta["steps_per_epoch"])
            self.global_batch = int(meta["global_batch"])
            self.views = int(meta["views"])
            self.image_shape = tuple(meta["image_shape"])
            self.aug_dtypes: dict[str, str] = dict(meta["aug_dtypes"])
            self.layout = OutputLayout.from_meta(meta)
        except (KeyError, TypeError, ValueError) as err:
            raise TeacherCacheError(f"teacher cache {self.path}: meta.json lacks or garbles {err}") from None

    @property
    def seed(self) -> int:
        """The seed of the cache's schedule (data order and augmentation of every run that uses it)."""
        return int(self.key["schedule"]["seed"])

    # -- may this run use the cache? -------------------------------------
    def check_usable(self, key: dict[str, Any], needed: Mapping[str, list[str]], epochs: int) -> None:
        """Raise a TeacherCacheError naming what is wrong: another setup, missing outputs, too few epochs."""
        differences = key_differences(self.key, key, ignore=RUN_MAY_DIFFER)
        if differences:
            lines = "\n  - ".join(differences)
            raise TeacherCacheMismatchError(
                f"teacher cache {self.path} was built for another teacher/data/augmentation setup; it differs "
                f"from this run in:\n  - {lines}\n"
                "build a cache for this run (another distill.teacher_cache path, "
                "or `kdlab cache-teacher CONFIG --force`)"
            )
        missing = {field: terms for field, terms in needed.items() if field not in self.layout.fields}
        if missing:
            wanted = ", ".join(f"{field} (for {', '.join(terms)})" for field, terms in sorted(missing.items()))
            raise TeacherCacheError(
                f"teacher cache {self.path} holds the teacher's {', '.join(self.layout.fields)} but this run needs its "
                f"{wanted}; build a cache with --fields {','.join(sorted(set(self.layout.fields) | set(missing)))}"
            )
        if epochs > self.epochs:
            raise TeacherCacheError(
                f"trainer.epochs={epochs} but teacher cache {self.path} holds only {self.epochs} epoch(s); "
                f"build it with at least {epochs} (`kdlab cache-teacher CONFIG --epochs {epochs}`) or train for "
                f"at most {self.epochs}"
            )

    def check_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < self.epochs:
            raise TeacherCacheError(
                f"epoch {epoch} is beyond the {self.epochs} epoch(s) held by teacher cache {self.path} "
                f"(this run wants at least {epoch + 1}); build the cache with more epochs"
            )

    # -- reading -----------------------------------------------------------
    def read(self, name: str, where: tuple) -> np.ndarray:
        """A writable numpy copy of ``array[where]`` (a few KB per step)."""
        return np.array(self.files.array(name)[where])

    def schedule(
        self, epoch: int, step: int, columns: slice, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(sample indices, augmentation parameters) of ``columns`` of the cached batch, on ``device``."""
        where = (epoch, step, columns)
        index = to_device(self.read("index", where), device, torch.long)
        params = {
            key: to_device(self.read(AUG_PREFIX + key, where), device, _torch_dtype(dtype))
            for key, dtype in self.aug_dtypes.items()
        }
        return index, params

    def params_at(self, epoch: int, step: int, columns: slice = slice(None)) -> dict[str, torch.Tensor]:
        """The cached augmentation parameters of a step (CPU), like ``FastTrainStream.params_at``."""
        return self.schedule(epoch, step, columns, torch.device("cpu"))[1]

    def rows(self, columns: slice) -> slice:
        """The rows (network inputs) of a slice of columns (images)."""
        start, stop, stride = columns.indices(self.global_batch)
        if stride != 1:
            raise ValueError(f"teacher cache columns must be contiguous, got {columns}")
        return slice(start * self.views, stop * self.views)

    def checksums(self, epoch: int, step: int, rows: slice, device: torch.device) -> torch.Tensor:
        return to_device(self.read("checksum", (epoch, step, rows)), device)

    def features(self, epoch: int, step: int, rows: slice, device: torch.device) -> Features:
        """The teacher's outputs for ``rows`` of a cached step, float32 on ``device``."""
        return self.layout.load(self.read, (epoch, step, rows), device)

    def describe(self) -> dict[str, Any]:
        """A summary for the CLI: where, what, how big."""
        return {
            "path": str(self.path),
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "global_batch": self.global_batch,
            "views": self.views,
            "fields": list(self.layout.fields),
            "logits": "full" if not self.layout.top_k else f"top-{self.layout.top_k}",
            "store_dtype": self.layout.dtype,
            "num_classes": self.layout.num_classes,
            "seed": self.seed,
            "bytes": self.files.size_bytes(),
            "build_seconds": self.files.meta.get("build_seconds"),
        }
