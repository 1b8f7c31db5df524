"""What a detection loss term sees: the student's detector outputs on one batch, and the teacher's."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from kdlab.methods.base import LossTerm

#: what a detection term may use: torchvision's own losses, the RoI class logits, the FPN maps
DETECTION_USES = frozenset({"losses", "roi_logits", "fpn"})


@dataclass
class DetectionBuildContext:
    """What a detection term may look at when it builds its modules.

    ``student_fpn`` / ``teacher_fpn``: (C, H, W) of every FPN level on a dry run at
    the data's image size, shallow (highest resolution) first.
    """

    student: nn.Module
    teacher: Optional[nn.Module]
    num_classes: int  # object classes, background not counted
    image_size: int
    student_fpn: list[tuple[int, int, int]]
    teacher_fpn: Optional[list[tuple[int, int, int]]]
    seed: int
    epochs: int
    steps_per_epoch: int
    config: Any = None
    device: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectionStep:
    """One training step as a detection term sees it.

    The RoIs are the student's: its RPN proposals, labelled and sampled by its RoI
    head. ``teacher_roi_logits`` are the teacher's box head and predictor on exactly
    those boxes, pooled from the teacher's own FPN maps of the same input tensor.
    """

    losses: dict[str, Tensor]  # torchvision's four training losses of the student
    student_fpn: "OrderedDict[str, Tensor]"  # (B, C, H, W) per level
    teacher_fpn: Optional["OrderedDict[str, Tensor]"]
    student_roi_logits: Tensor  # (R, K + 1), column 0 background
    teacher_roi_logits: Optional[Tensor]  # (R, K + 1), no gradient
    roi_labels: Tensor  # (R,) int64 in 0..K
    epoch: int
    progress: float
    batch: dict[str, Any]


class DetectionTerm(LossTerm):
    """A loss term of the detection task (``task: detection``)."""

    task: ClassVar[str] = "detection"
    uses: ClassVar[frozenset[str]] = frozenset({"roi_logits"})

    def __init__(self, ctx: DetectionBuildContext) -> None:  # type: ignore[override]
        nn.Module.__init__(self)

    def forward(self, step: DetectionStep) -> torch.Tensor | dict[str, torch.Tensor]:  # type: ignore[override]
        raise NotImplementedError
