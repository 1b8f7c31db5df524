"""The data contract the trainer consumes: batches, streams and the bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Protocol, runtime_checkable

import torch

Batch = dict[str, torch.Tensor]
"""One batch.

``"image"``: float (B, C, H, W), normalised, or (B, V, C, H, W) with views;
``"target"``: int64 (B,); ``"index"``: int64 (B,), the sample's index in the
(subset) split; optional ``"aug"`` (fast path, training only): a dict of
per-sample augmentation parameters that :meth:`BatchAugment.apply` replays.
"""


@runtime_checkable
class TrainStream(Protocol):
    """Augmented training batches, replayable from any (epoch, step)."""

    steps_per_epoch: int

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Yield the batches ``start_step, start_step + 1, ...`` of ``epoch``, on the device."""
        ...


@runtime_checkable
class EvalStream(Protocol):
    """One split without augmentation, in a fixed order, each sample of this rank's shard once."""

    num_samples: int

    def __iter__(self) -> Iterator[Batch]:
        ...


@dataclass
class DataBundle:
    """Everything the trainer needs to know about the data of one run."""

    train: TrainStream
    eval: EvalStream
    train_eval: EvalStream
    num_classes: int
    classes: list[str]
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    fingerprint: str
    #: labels of the (subset) training split as training sees them (with any data.label_noise), index-aligned
    #: with batches' "index" (CRD's class-aware negatives); ``train_eval`` carries the clean labels
    train_targets: Optional[torch.Tensor] = None
    #: lines saying how the training set differs from the dataset's (data.per_class, data.label_noise),
    #: announced when the data is built
    notes: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        """What a deployed model needs about its input and output, recorded in every checkpoint
        (``data_facts``): number and names of the classes, channels, resolution, normalisation."""
        return {"num_classes": int(self.num_classes), "classes": [str(c) for c in self.classes],
                "in_chans": int(self.in_chans), "image_size": int(self.image_size),
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
