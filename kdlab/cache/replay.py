"""The training stream of a run that reads its teacher from a cache.

Each batch is rebuilt from the cache's schedule (sample indices and
augmentation parameters of that epoch and step) with the fast path's own
in-memory images and :class:`~kdlab.data.BatchAugment`, and carries the
cached teacher outputs as ``batch["teacher_features"]``; the Distiller then
skips the teacher forward. Every replayed input is checked against the
checksum the cache recorded for it: the first batch of an epoch at once, the
others on the device without a host sync, settled when the epoch ends.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from kdlab.data.augment import one_thread_on_cpu
from kdlab.data.fast import FastTrainStream
from kdlab.data.streams_common import check_start_step
from kdlab.data.types import Batch

from .checksum import checksum_tolerance, input_checksums
from .errors import TeacherCacheError
from .teacher_cache import TeacherCache


class CachedTeacherStream:
    """A :class:`~kdlab.data.types.TrainStream` replaying a teacher cache's schedule.

    ``stream`` supplies the images, labels, augmentation code and this
    process's columns of the global batch (its DDP share); its own seed and
    planner are not used.
    """

    def __init__(self, cache: TeacherCache, stream: FastTrainStream, device: torch.device) -> None:
        if cache.global_batch != stream.planner.global_batch:
            raise TeacherCacheError(
                f"teacher cache {cache.path} has global batches of {cache.global_batch}, "
                f"this run {stream.planner.global_batch} (data.batch_size)"
            )
        self.cache = cache
        self.stream = stream
        self.device = device
        self.columns = stream.columns
        self.rows = cache.rows(stream.columns)
        self.steps_per_epoch = cache.steps_per_epoch
        self.images = stream.images
        self.labels = stream.labels
        self.augment = stream.augment
        self.seed = cache.seed
        self._pixels = int(torch.Size(cache.image_shape).numel())

    def params_at(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """This process's cached augmentation parameters of a step (CPU)."""
        return self.cache.params_at(epoch, step, self.columns)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches ``start_step, ...`` of cached ``epoch``, with ``teacher_features``."""
        check_start_step(start_step, self.steps_per_epoch)
        self.cache.check_epoch(epoch)
        excess: Optional[torch.Tensor] = None
        for step in range(start_step, self.steps_per_epoch):
            index, params = self.cache.schedule(epoch, step, self.columns, self.device)
            with one_thread_on_cpu(self.device):
                pixels = self.images[index]
            images = self.augment.apply(pixels, params)
            stored = self.cache.checksums(epoch, step, self.rows, self.device)
            deviation = (input_checksums(images) - stored).abs() - checksum_tolerance(stored, self._pixels)
            worst = deviation.max()
            if excess is None:
                self._verify(worst, epoch, step)  # one host sync per epoch
                excess = worst.clamp_min(0)
            else:
                excess = torch.maximum(excess, worst)
            yield {
                "image": images,
                "target": self.labels[index],
                "index": index,
                "aug": params,
                "teacher_features": self.cache.features(epoch, step, self.rows, self.device),
            }
        if excess is not None:
            self._verify(excess, epoch, None)

    def _verify(self, excess: torch.Tensor, epoch: int, step: Optional[int]) -> None:
        value = float(excess)
        if value > 0:
            where = f"step {step} of epoch {epoch}" if step is not None else f"some step of epoch {epoch}"
            raise TeacherCacheError(
                f"the replayed input of {where} differs from the image the teacher saw when cache {self.cache.path} "
                f"was built (checksum off by {value:.4g} beyond tolerance): the images or the augmentation code "
                "changed since; build the cache again"
            )
