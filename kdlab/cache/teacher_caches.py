"""Several teachers' caches read as one: a multi-teacher run's cached batches.

With ``teachers:`` every teacher that a cache can feed has its own cache (its own key, fingerprint and
folder ``<distill.teacher_cache>/<teacher key>``), built over the same replayable schedule. A
:class:`TeacherCacheSet` puts them together for the replay streams: the schedule (sample indices,
augmentation parameters, input checksums) is read from the first cache, after checking that every cache
was built on the same one, and ``features`` returns ``{teacher key: Features}``, which batches carry as
``batch["teacher_features"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kdlab.models.features import Features

from .errors import TeacherCacheMismatchError
from .key import key_differences
from .teacher_cache import TeacherCache


def _schedule_key(cache: TeacherCache) -> dict[str, Any]:
    """What decides the batches a cache replays: its key without the teacher."""
    return {name: value for name, value in cache.key.items() if name != "teacher"}


class TeacherCacheSet:
    """Teacher caches of one schedule, by teacher key; duck-types :class:`TeacherCache` for the replay streams.

    Raises TeacherCacheMismatchError naming what differs when two caches were built on different
    schedules (data, augmentation, seed, batch layout): their rows would not be the same images.
    """

    def __init__(self, caches: Mapping[str, TeacherCache], root: str | Path) -> None:
        if not caches:
            raise ValueError("a TeacherCacheSet needs at least one cache")
        self.caches = dict(caches)
        self.path = Path(root)
        (first_key, first), *others = self.caches.items()
        self._first = first
        for key, cache in others:
            problems = key_differences(_schedule_key(first), _schedule_key(cache))
            for name in ("steps_per_epoch", "global_batch", "views", "image_shape", "aug_dtypes"):
                if getattr(first, name) != getattr(cache, name):
                    problems.append(f"{name}: {first_key} has {getattr(first, name)!r}, {key} has {getattr(cache, name)!r}")
            if not problems and not np.array_equal(first.read("index", (0, 0)), cache.read("index", (0, 0))):
                problems.append("the sample order of epoch 0, step 0 differs")
            if problems:
                lines = "\n  - ".join(problems)
                raise TeacherCacheMismatchError(
                    f"teacher caches {first.path} and {cache.path} were built on different schedules, so their rows "
                    f"are not the same images:\n  - {lines}\nbuild both for the same run "
                    "(`kdlab cache-teacher CONFIG --force`)"
                )
        self.epochs = min(cache.epochs for cache in self.caches.values())
        self.steps_per_epoch = first.steps_per_epoch
        self.global_batch = first.global_batch
        self.views = first.views
        self.image_shape = first.image_shape
        self.aug_dtypes = first.aug_dtypes

    @property
    def seed(self) -> int:
        return self._first.seed

    def check_epoch(self, epoch: int) -> None:
        for cache in self.caches.values():
            cache.check_epoch(epoch)

    def read(self, name: str, where: tuple) -> np.ndarray:
        return self._first.read(name, where)

    def schedule(self, epoch: int, step: int, columns: slice, device: torch.device
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self._first.schedule(epoch, step, columns, device)

    def params_at(self, epoch: int, step: int, columns: slice = slice(None)) -> dict[str, torch.Tensor]:
        return self._first.params_at(epoch, step, columns)

    def rows(self, columns: slice) -> slice:
        return self._first.rows(columns)

    def checksums(self, epoch: int, step: int, rows: slice, device: torch.device) -> torch.Tensor:
        return self._first.checksums(epoch, step, rows, device)

    def features(self, epoch: int, step: int, rows: slice, device: torch.device) -> dict[str, Features]:
        """Each cached teacher's outputs for ``rows`` of a step, float32 on ``device``."""
        return {key: cache.features(epoch, step, rows, device) for key, cache in self.caches.items()}

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "teachers": {key: cache.describe() for key, cache in self.caches.items()}}
