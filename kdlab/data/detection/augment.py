"""Training augmentation of detection images, boxes moved with the pixels.

Every draw comes from a generator seeded by (seed, epoch, image index), so an
image's augmentation is the same in any process, batch or resumed run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from kdlab.data.seeding import generator_for

#: a box cropped by scale jitter is kept while at least this fraction of its (scaled) area remains
MIN_VISIBLE = 0.3


@dataclass(frozen=True)
class DetectionAugment:
    """``flip``: horizontal flip with probability 0.5; ``scale``: (low, high) rescale, cropped/padded back."""

    flip: bool = False
    scale: Optional[tuple[float, float]] = None

    @property
    def active(self) -> bool:
        return self.flip or self.scale is not None

    def __call__(
        self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, seed: int, epoch: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image`` (3, H, W) float, ``boxes`` (N, 4) xyxy -> the augmented triple (same H, W)."""
        if not self.active:
            return image, boxes, labels
        g = generator_for("det-aug", seed, epoch, index)
        draws = torch.rand(4, generator=g).tolist()  # flip, scale, crop y, crop x: fixed order
        if self.scale is not None:
            image, boxes, labels = _scale_jitter(image, boxes, labels, self.scale, draws[1:])
        if self.flip and draws[0] < 0.5:
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return image, boxes, labels


def _scale_jitter(
    image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, scale: tuple[float, float], u: list[float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, height, width = image.shape
    s = scale[0] + (scale[1] - scale[0]) * u[0]
    new_h, new_w = max(1, round(height * s)), max(1, round(width * s))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    top = int(u[1] * (new_h - height + 1)) if new_h > height else 0
    left = int(u[2] * (new_w - width + 1)) if new_w > width else 0
    canvas = image.new_zeros(image.shape)
    crop = resized[:, top : top + height, left : left + width]
    canvas[:, : crop.shape[1], : crop.shape[2]] = crop
    factor = torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
    scaled = boxes * factor - torch.tensor([left, top, left, top], dtype=boxes.dtype)
    clipped = torch.stack([scaled[:, 0].clamp(0, width), scaled[:, 1].clamp(0, height),
                           scaled[:, 2].clamp(0, width), scaled[:, 3].clamp(0, height)], dim=1)
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    keep = (area(clipped) >= MIN_VISIBLE * area(scaled)) & (clipped[:, 2] - clipped[:, 0] >= 1) & (
        clipped[:, 3] - clipped[:, 1] >= 1)
    return canvas, clipped[keep], labels[keep]
