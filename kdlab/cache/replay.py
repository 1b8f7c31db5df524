"""The training stream of a run that reads its teacher from a cache.

Each batch is rebuilt from the cache's schedule (sample indices and
augmentation parameters of that epoch and step) and carries the cached teacher
outputs as ``batch["teacher_features"]``; the Distiller then skips the teacher
forward. The fast path rebuilds it with its own in-memory images and
:class:`~kdlab.data.BatchAugment`; the standard path hands the stored (index,
augmentation seed) pairs to its DataLoader, whose workers run each sample's
transforms under its seed. Every replayed input is checked against the
checksum the cache recorded for it: the first batch of an epoch at once, the
others on the device without a host sync, settled when the epoch ends.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

from kdlab.data.augment import one_thread_on_cpu
from kdlab.data.fast import FastTrainStream
from kdlab.data.standard import StandardTrainStream
from kdlab.data.streams_common import check_start_step
from kdlab.data.types import Batch

from .build import ReplayableStream
from .checksum import checksum_tolerance, input_checksums
from .errors import TeacherCacheError
from .teacher_cache import AUG_PREFIX, TeacherCache


class _ChecksumGuard:
    """Compares replayed inputs with the cache's checksums: one host read per epoch."""

    def __init__(self, cache: TeacherCache, rows: slice) -> None:
        self.cache = cache
        self.rows = rows
        self._pixels = int(torch.Size(cache.image_shape).numel())
        self._excess: Optional[torch.Tensor] = None

    def start_epoch(self) -> None:
        self._excess = None

    def check(self, images: torch.Tensor, epoch: int, step: int) -> None:
        stored = self.cache.checksums(epoch, step, self.rows, images.device)
        deviation = (input_checksums(images) - stored).abs() - checksum_tolerance(stored, self._pixels)
        worst = deviation.max()
        if self._excess is None:
            self._verify(worst, epoch, step)  # the first batch of the epoch at once
            self._excess = worst.clamp_min(0)
        else:
            self._excess = torch.maximum(self._excess, worst)

    def end_epoch(self, epoch: int) -> None:
        if self._excess is not None:
            self._verify(self._excess, epoch, None)

    def _verify(self, excess: torch.Tensor, epoch: int, step: Optional[int]) -> None:
        value = float(excess)
        if value > 0:
            where = f"step {step} of epoch {epoch}" if step is not None else f"some step of epoch {epoch}"
            raise TeacherCacheError(
                f"the replayed input of {where} differs from the image the teacher saw when cache {self.cache.path} "
                f"was built (checksum off by {value:.4g} beyond tolerance): the images or the augmentation code "
                "changed since; build the cache again"
            )


class _CacheReplay:
    """What both replays hold: the cache, this process's columns and rows of it, the checksum guard."""

    def __init__(self, cache: TeacherCache, stream: ReplayableStream, device: torch.device) -> None:
        if cache.global_batch != stream.planner.global_batch:
            raise TeacherCacheError(
                f"teacher cache {cache.path} has global batches of {cache.global_batch}, "
                f"this run {stream.planner.global_batch} (data.batch_size)"
            )
        self.cache = cache
        self.device = device
        self.columns = stream.columns
        self.rows = cache.rows(stream.columns)
        self.steps_per_epoch = cache.steps_per_epoch
        self.seed = cache.seed
        self._guard = _ChecksumGuard(cache, self.rows)


class CachedTeacherStream(_CacheReplay):
    """A :class:`~kdlab.data.types.TrainStream` replaying a teacher cache's schedule on the fast path.

    ``stream`` supplies the images, labels, augmentation code and this
    process's columns of the global batch (its DDP share); its own seed and
    planner are not used.
    """

    def __init__(self, cache: TeacherCache, stream: FastTrainStream, device: torch.device) -> None:
        super().__init__(cache, stream, device)
        self.stream = stream
        self.images = stream.images
        self.labels = stream.labels
        self.augment = stream.augment

    def params_at(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """This process's cached augmentation parameters of a step (CPU)."""
        return self.cache.params_at(epoch, step, self.columns)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches ``start_step, ...`` of cached ``epoch``, with ``teacher_features``."""
        check_start_step(start_step, self.steps_per_epoch)
        self.cache.check_epoch(epoch)
        self._guard.start_epoch()
        for step in range(start_step, self.steps_per_epoch):
            index, params = self.cache.schedule(epoch, step, self.columns, self.device)
            with one_thread_on_cpu(self.device):
                pixels = self.images[index]
            images = self.augment.apply(pixels, params)
            self._guard.check(images, epoch, step)
            yield {
                "image": images,
                "target": self.labels[index],
                "index": index,
                "aug": params,
                "teacher_features": self.cache.features(epoch, step, self.rows, self.device),
            }
        self._guard.end_epoch(epoch)


class CachedStandardTeacherStream(_CacheReplay):
    """A :class:`~kdlab.data.types.TrainStream` replaying a teacher cache's schedule on the standard path.

    ``stream`` supplies the dataset, its transforms, the DataLoader settings and
    this process's columns of the global batch; the cache supplies every step's
    sample indices and per-sample augmentation seeds, so the workers decode and
    transform exactly the images the teacher saw (RandomResizedCrop, colour
    jitter and all), whatever this run's seed.
    """

    def __init__(self, cache: TeacherCache, stream: StandardTrainStream, device: torch.device) -> None:
        super().__init__(cache, stream, device)
        if "seed" not in cache.aug_dtypes:
            raise TeacherCacheError(
                f"teacher cache {cache.path} was built on the fast data path (it stores crop/flip parameters, not "
                "per-sample augmentation seeds); this run uses the standard path: build a cache for it"
            )
        self.stream = stream

    def _pairs(self, epoch: int) -> Callable[[int], list[tuple[int, int]]]:
        def pairs(step: int) -> list[tuple[int, int]]:
            where = (epoch, step, self.columns)
            indices = self.cache.read("index", where).tolist()
            seeds = self.cache.read(AUG_PREFIX + "seed", where).tolist()
            return list(zip(indices, seeds))

        return pairs

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches ``start_step, ...`` of cached ``epoch``, with ``teacher_features``."""
        check_start_step(start_step, self.steps_per_epoch)
        self.cache.check_epoch(epoch)
        self._guard.start_epoch()
        batches = self.stream.replay(epoch, self._pairs(epoch), self.steps_per_epoch, start_step)
        for step, batch in zip(range(start_step, self.steps_per_epoch), batches):
            self._guard.check(batch["image"], epoch, step)
            yield {**batch, "teacher_features": self.cache.features(epoch, step, self.rows, self.device)}
        self._guard.end_epoch(epoch)
