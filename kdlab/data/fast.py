"""The fast path: uint8 images resident on the device, augmented a whole batch at a time."""

from __future__ import annotations

from typing import Iterator

import torch

from .augment import BatchAugment, one_thread_on_cpu
from .seeding import generator_for
from .streams_common import Planner, check_start_step, to_device_async
from .types import Batch


class FastTrainStream:
    """Training batches gathered from an in-memory uint8 tensor and augmented by :class:`BatchAugment`.

    ``images``/``labels`` are the (subset) training split on the device;
    ``augment`` and :meth:`params_at` let a teacher cache recompute any batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        planner: Planner,
        columns: slice,
        augment: BatchAugment,
        seed: int,
    ) -> None:
        self.images = images
        self.labels = labels
        self.planner = planner
        self.columns = columns
        self.augment = augment
        self.seed = seed
        self.steps_per_epoch = planner.steps

    def params_at(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """This rank's augmentation parameters of batch ``step`` of ``epoch``.

        Drawn for the whole global batch, then sliced, so they do not depend on the world size.
        """
        generator = generator_for("augment", self.seed, epoch, step)
        params = self.augment.sample_params(generator, self.planner.global_batch)
        return {key: value[self.columns] for key, value in params.items()}

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches ``start_step, ...`` of ``epoch``, identical to those of an uninterrupted epoch."""
        check_start_step(start_step, self.steps_per_epoch)
        plan = self.planner.plan(epoch)
        device = self.images.device
        for step in range(start_step, plan.shape[0]):
            index = to_device_async(plan[step, self.columns], device)
            params = {k: to_device_async(v, device) for k, v in self.params_at(epoch, step).items()}
            with one_thread_on_cpu(device):
                images = self.images[index]
            yield {
                "image": self.augment.apply(images, params),
                "target": self.labels[index],
                "index": index,
                "aug": params,
            }


class FastEvalStream:
    """A split's shard in index order, normalised, no augmentation."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, batch_size: int,
                 augment: BatchAugment) -> None:
        self.images = images
        self.labels = labels
        self.indices = indices.to(images.device)
        self.batch_size = batch_size
        self.augment = augment
        self.num_samples = int(indices.numel())

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for index in self.indices.split(self.batch_size):
            with one_thread_on_cpu(self.images.device):
                images = self.images[index]
            yield {
                "image": self.augment.normalize(images),
                "target": self.labels[index],
                "index": index,
            }
