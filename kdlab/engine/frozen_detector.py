"""The frozen teacher detector: eval mode always, no gradients, BatchNorm untouched.

The detection Distiller needs two pieces of the teacher, not its whole forward:
its FPN maps of the student's input tensor, and its box head's class logits for
the student's sampled RoIs. Both run without autograd (``inference_mode``) in
eval mode, so the teacher's parameters get no gradient and its BatchNorm
statistics never move; outputs are copied out of inference mode so the losses
can keep them for the student's backward pass.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import Tensor, nn


class FrozenDetector(nn.Module):
    """Wraps a trained torchvision detector so nothing can change it.

    ``precision``: None runs under the surrounding autocast (the student's); ``"fp32"``
    or ``"bf16"`` fixes the teacher's own; outputs are fp32 either way.
    """

    def __init__(self, model: nn.Module, precision: Optional[str] = None) -> None:
        super().__init__()
        if precision not in (None, "fp32", "bf16"):
            raise ValueError(f"teacher precision must be fp32, bf16 or None, got {precision!r}")
        self.model = model
        self.precision = precision
        for p in self.model.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenDetector":  # noqa: ARG002 - the teacher never trains
        return super().train(False)

    @property
    def num_classes(self) -> Any:
        return getattr(self.model, "num_classes", None)

    def _context(self, x: Tensor) -> Any:
        if self.precision is None:
            return contextlib.nullcontext()
        if self.precision == "fp32":
            return torch.autocast(x.device.type, enabled=False)
        return torch.autocast(x.device.type, dtype=torch.bfloat16)

    def features(self, tensors: Tensor) -> "OrderedDict[str, Tensor]":
        """The teacher's FPN maps of an already transformed (normalised, resized, batched) input."""
        with torch.inference_mode(), self._context(tensors):
            out = self.model.backbone(tensors)
        if isinstance(out, Tensor):
            out = OrderedDict([("0", out)])
        return OrderedDict((k, v.float().clone()) for k, v in out.items())

    def roi_class_logits(
        self, features: "OrderedDict[str, Tensor]", boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor:
        """(R, K + 1) class logits of the teacher's box head for the given boxes (per image, input pixels)."""
        heads = self.model.roi_heads
        with torch.inference_mode(), self._context(boxes[0] if boxes else next(iter(features.values()))):
            pooled = heads.box_roi_pool(features, [b.detach() for b in boxes], image_sizes)
            logits, _ = heads.box_predictor(heads.box_head(pooled))
        return logits.float().clone()

    def forward(self, images: list[Tensor]) -> Any:
        """The detector's own eval forward (detections per image)."""
        with torch.inference_mode():
            return self.model(images)
