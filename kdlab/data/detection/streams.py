"""Detection batches: seeded training epochs replayable from any step, and sharded evaluation."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kdlab.data.augment import one_thread_on_cpu
from kdlab.data.detection.augment import DetectionAugment
from kdlab.data.detection.containers import ImageContainer
from kdlab.data.detection.records import ImageRecord
from kdlab.data.planners import RandomBatchPlanner
from kdlab.data.seeding import generator_for


def pil_to_uint8(image: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class DetectionImages(Dataset):
    """Items ``(position, epoch)`` of a split -> (image in [0, 1], target, position, image id).

    ``decoded``: the split's images as uint8 tensors, when they were decoded once into memory.
    ``epoch`` None: no augmentation (evaluation).
    """

    def __init__(self, records: list[ImageRecord], container: ImageContainer, augment: DetectionAugment,
                 seed: int, decoded: Optional[list[torch.Tensor]] = None) -> None:
        self.records = records
        self.container = container
        self.augment = augment
        self.seed = seed
        self.decoded = decoded

    def __len__(self) -> int:
        return len(self.records)

    def pixels(self, position: int) -> torch.Tensor:
        if self.decoded is not None:
            return self.decoded[position]
        return pil_to_uint8(self.container.open_rgb(self.records[position].file))

    def __getitem__(self, key: tuple[int, Optional[int]]) -> tuple[torch.Tensor, dict[str, torch.Tensor], int, int]:
        position, epoch = key
        record = self.records[position]
        image = self.pixels(position).float().div_(255.0)
        keep = ~record.crowd
        boxes = torch.from_numpy(record.boxes[keep].copy()).reshape(-1, 4)
        labels = torch.from_numpy(record.labels[keep].copy())
        if epoch is not None:
            image, boxes, labels = self.augment(image, boxes, labels, self.seed, epoch, position)
        return image, {"boxes": boxes.float(), "labels": labels.long()}, position, record.image_id


def collate(items: list[tuple]) -> dict[str, Any]:
    return {
        "images": [item[0] for item in items],
        "targets": [item[1] for item in items],
        "index": torch.tensor([item[2] for item in items], dtype=torch.long),
        "image_id": torch.tensor([item[3] for item in items], dtype=torch.long),
    }


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    if device.type == "cpu":
        return batch
    blocking = device.type != "cuda"
    return {
        "images": [im.to(device, non_blocking=not blocking) for im in batch["images"]],
        "targets": [{k: v.to(device, non_blocking=not blocking) for k, v in t.items()} for t in batch["targets"]],
        "index": batch["index"].to(device),
        "image_id": batch["image_id"].to(device),
    }


def _batches(dataset: DetectionImages, keys: list[list[tuple[int, Optional[int]]]], num_workers: int,
             device: torch.device, loader_seed: tuple) -> Iterator[dict[str, Any]]:
    if not keys:
        return
    if num_workers == 0 or dataset.decoded is not None:
        for row in keys:
            with one_thread_on_cpu(torch.device("cpu")):
                batch = collate([dataset[k] for k in row])
            yield to_device(batch, device)
        return
    loader = DataLoader(dataset, batch_sampler=keys, num_workers=min(num_workers, len(keys)), collate_fn=collate,
                        pin_memory=device.type == "cuda", generator=generator_for(*loader_seed))
    for batch in loader:
        yield to_device(batch, device)


class DetectionTrainStream:
    """Augmented training batches; ``epoch(e, start_step=s)`` yields exactly the batches s.. of epoch e."""

    def __init__(self, dataset: DetectionImages, planner: RandomBatchPlanner, columns: slice, *,
                 device: torch.device, num_workers: int) -> None:
        self.dataset = dataset
        self.planner = planner
        self.columns = columns
        self.device = device
        self.num_workers = num_workers
        self.steps_per_epoch = planner.steps

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, Any]]:
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step={start_step} outside the epoch's {self.steps_per_epoch} steps")
        plan = self.planner.plan(epoch)[start_step:, self.columns]
        keys = [[(int(i), epoch) for i in row] for row in plan.tolist()]
        yield from _batches(self.dataset, keys, self.num_workers, self.device,
                            ("det-loader", self.dataset.seed, epoch, start_step))


class DetectionEvalStream:
    """This rank's images of the evaluation split (positions rank, rank + world, ...), no augmentation."""

    def __init__(self, dataset: DetectionImages, batch_size: int, rank: int, world_size: int, *,
                 device: torch.device, num_workers: int) -> None:
        self.dataset = dataset
        self.positions = list(range(rank, len(dataset), world_size))
        self.batch_size = batch_size
        self.device = device
        self.num_workers = num_workers
        self.num_samples = len(self.positions)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        keys = [[(p, None) for p in self.positions[i : i + self.batch_size]]
                for i in range(0, len(self.positions), self.batch_size)]
        yield from _batches(self.dataset, keys, self.num_workers, self.device, ("det-eval-loader",))
