"""Tiny Faster R-CNNs and batches for the detection tests (built by hand: no registry, no data files)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from kdlab.engine.frozen_detector import FrozenDetector
from kdlab.methods.detection.base import DetectionBuildContext
from kdlab.methods.detection.build import fpn_shapes

CANVAS = 64
CLASSES = 3


class TwoLevelBody(nn.Module):
    """Two strided conv + BatchNorm stages returned as two "FPN" levels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1), nn.BatchNorm2d(channels), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(channels, channels, 3, 2, 1), nn.BatchNorm2d(channels), nn.ReLU())
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        a = self.a(x)
        return OrderedDict([("0", a), ("1", self.b(a))])


def tiny_detector(seed: int, channels: int = 16) -> FasterRCNN:
    torch.manual_seed(seed)
    model = FasterRCNN(
        TwoLevelBody(channels), num_classes=CLASSES + 1, min_size=CANVAS, max_size=CANVAS,
        rpn_anchor_generator=AnchorGenerator(((8,), (16,)), ((0.5, 1.0, 2.0),) * 2),
        box_roi_pool=MultiScaleRoIAlign(["0", "1"], 7, 2),
        rpn_batch_size_per_image=32, box_batch_size_per_image=16,
        rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
        rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
    )
    model.num_classes = CLASSES
    return model


def frozen_teacher(seed: int = 100) -> FrozenDetector:
    return FrozenDetector(tiny_detector(seed))


def build_context(student: nn.Module, teacher: FrozenDetector | None) -> DetectionBuildContext:
    cpu = torch.device("cpu")
    return DetectionBuildContext(
        student=student, teacher=teacher, num_classes=CLASSES, image_size=CANVAS,
        student_fpn=fpn_shapes(student, CANVAS, cpu),
        teacher_fpn=fpn_shapes(teacher.model, CANVAS, cpu) if teacher is not None else None,
        seed=0, epochs=1, steps_per_epoch=1,
    )


def batch(n: int = 2, *, empty: tuple[int, ...] = (), seed: int = 0, index_offset: int = 0) -> dict[str, Any]:
    """``n`` random canvases with one or two boxes each (none for the images in ``empty``)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i in range(n):
        images.append(torch.rand(3, CANVAS, CANVAS, generator=g))
        if i in empty:
            targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)})
            continue
        boxes = torch.tensor([[4.0, 6.0, 30.0, 34.0], [30.0, 20.0, 60.0, 58.0]])[: 1 + i % 2]
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3])[: len(boxes)]})
    index = torch.arange(n) + index_offset
    return {"images": images, "targets": targets, "index": index, "image_id": index + 1}
