"""The one input resolution a network may insist on, and resizing a batch to it.

Convolutional networks (the zoo, torchvision and timm CNNs) pool globally and
take any resolution: they declare none. A network whose patch grid is fixed at
construction does: a timm ViT/DeiT/Swin built without ``dynamic_img_size``
(:attr:`kdlab.models.timm_adapter.TimmFeatureModel.input_size`, its
``img_size``) or a torchvision ViT (its ``image_size``). A frozen teacher of that
kind is fed the student's batch resized to its size
(:class:`kdlab.engine.teacher.FrozenTeacher`); the resolution a timm *hub*
configuration was pretrained at (``pretrained_cfg["input_size"]``) is not
used: a CNN fine-tuned at 32 px would be fed 224 px for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn


def required_input_size(model: nn.Module) -> Optional[tuple[int, int]]:
    """(H, W) ``model`` only accepts, or None when any resolution works.

    Read from the model's ``input_size`` attribute (kdlab's timm adapter sets it), or
    from a torchvision ViT's ``image_size`` inside kdlab's torchvision adapter.
    """
    declared = getattr(model, "input_size", None)
    if declared is not None:
        return as_size(declared, f"{type(model).__name__}.input_size")
    inner = getattr(model, "model", None)
    if inner is not None:
        from torchvision.models import VisionTransformer

        if isinstance(inner, VisionTransformer):
            return (int(inner.image_size), int(inner.image_size))
    return None


def as_size(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """``224`` or ``(224, 224)`` as ``(H, W)`` of positive ints; a ValueError naming ``what`` otherwise."""
    if isinstance(value, int):
        size: tuple[Any, ...] = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        size = tuple(value)
    else:
        size = ()
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(f"{what} must be a positive int or [height, width], got {value!r}")
    return (int(size[0]), int(size[1]))


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, C, H, W) at ``size``: bilinear, antialiased when shrinking (as PIL's and torchvision's resize).

    Unchanged when already that size. Computed in fp32 (CPU kernels have no antialiased bf16) and
    returned in ``x``'s dtype.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if (height, width) == tuple(size):
        return x
    shrinking = size[0] < height or size[1] < width
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return out.to(x.dtype)
