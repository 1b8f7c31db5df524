"""The standard path: torchvision transforms on PIL images in a DataLoader with workers.

The batch sampler hands each worker (index, seed) pairs; the worker seeds
torch's RNG with the sample's seed before the transforms (in a forked RNG
state, so the caller's global RNG is untouched when there are no workers).
The images therefore depend on the seeds only, not on the worker count.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .seeding import generator_for
from .sources.base import SplitSpec
from .streams_common import Planner, check_start_step, move_batch
from .types import Batch

_SEED_LIMIT = 2**62


class SeededTrainDataset(Dataset):
    """Sample ``(index, seed)``: the image transformed under ``torch.manual_seed(seed)``, its label and index."""

    def __init__(self, split: SplitSpec, transform: Callable) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int, int]:
        index, seed = key
        image = self.split.load_pil(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tensor = self.transform(image)
        return tensor, int(self.split.labels[index]), index, seed


class EvalDataset(Dataset):
    """Samples ``positions[i]`` of a split under the deterministic eval transform."""

    def __init__(self, split: SplitSpec, transform: Callable, positions: np.ndarray) -> None:
        self.split = split
        self.transform = transform
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        index = int(self.positions[i])
        return self.transform(self.split.load_pil(index)), int(self.split.labels[index]), index


#: (sample index, per-sample augmentation seed) pairs of this process's columns of one step
StepPairs = Callable[[int], list[tuple[int, int]]]


class _PlannedBatches:
    """Batch sampler over steps start..end of an epoch: each step's (index, seed) pairs from ``pairs``."""

    def __init__(self, pairs: StepPairs, steps: int, start_step: int) -> None:
        self.pairs = pairs
        self.steps = steps
        self.start_step = start_step

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            yield self.pairs(step)


def planned_pairs(plan: torch.Tensor, columns: slice, seed: int, epoch: int) -> StepPairs:
    """The planner's samples of each step with their augmentation seeds, drawn from (seed, epoch, step)."""

    def pairs(step: int) -> list[tuple[int, int]]:
        generator = generator_for("augment", seed, epoch, step)
        seeds = torch.randint(0, _SEED_LIMIT, (plan.shape[1],), generator=generator)
        return list(zip(plan[step, columns].tolist(), seeds[columns].tolist()))

    return pairs


def _collate(samples: list[tuple]) -> Batch:
    images, targets, indices, *seeds = zip(*samples)
    batch: Batch = {
        "image": torch.stack(images),
        "target": torch.tensor(targets, dtype=torch.long),
        "index": torch.tensor(indices, dtype=torch.long),
    }
    if seeds:
        # a sample's augmentation is a function of its seed: the seed is its augmentation parameter
        batch["aug"] = {"seed": torch.tensor(seeds[0], dtype=torch.long)}
    return batch


class StandardTrainStream:
    """Augmented training batches from a DataLoader whose batch sampler follows the planner."""

    def __init__(
        self,
        dataset: SeededTrainDataset,
        planner: Planner,
        columns: slice,
        seed: int,
        *,
        device: torch.device,
        num_workers: int,
        channels_last: bool = False,
    ) -> None:
        self.dataset = dataset
        self.planner = planner
        self.columns = columns
        self.seed = seed
        self.device = device
        self.num_workers = num_workers
        self.channels_last = channels_last
        self.steps_per_epoch = planner.steps

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        check_start_step(start_step, self.steps_per_epoch)
        pairs = planned_pairs(self.planner.plan(epoch), self.columns, self.seed, epoch)
        yield from self.replay(epoch, pairs, self.steps_per_epoch, start_step)

    def replay(self, epoch: int, pairs: StepPairs, steps: int, start_step: int = 0) -> Iterator[Batch]:
        """Batches of the given (index, augmentation seed) pairs, steps ``start_step..steps - 1``.

        The images equal those of any earlier pass over the same pairs: each sample's transform
        runs under its own seed (what a teacher cache replays).
        """
        sampler = _PlannedBatches(pairs, steps, start_step)
        if len(sampler) == 0:
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            # The loader draws a base seed for its workers; from its own generator, not the global RNG.
            generator=generator_for("loader", self.seed, epoch),
        )
        for batch in loader:
            yield move_batch(batch, self.device, channels_last=self.channels_last)


class StandardEvalStream:
    """A split's shard through the eval transform, in index order."""

    def __init__(
        self,
        split: SplitSpec,
        transform: Callable,
        indices: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device,
        num_workers: int,
        channels_last: bool = False,
    ) -> None:
        self.dataset = EvalDataset(split, transform, indices.numpy())
        self.batch_size = batch_size
        self.device = device
        self.num_workers = num_workers
        self.channels_last = channels_last
        self.num_samples = int(indices.numel())

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        if self.num_samples == 0:
            return
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=min(self.num_workers, len(self)),
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            generator=generator_for("eval-loader"),
        )
        for batch in loader:
            yield move_batch(batch, self.device, channels_last=self.channels_last)
