"""Questions a trainer asks about a model: is it a detector, and which input transform does it use?

A teacher and a student must see the same resized, normalised canvas for
their feature maps and proposals to correspond, so a trainer compares
:func:`transform_signature` of the two and refuses a mismatched pair.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel/DistributedDataParallel (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def is_detector(model: nn.Module) -> bool:
    """True for torchvision's R-CNN family (FasterRCNN and friends), also when wrapped by DDP or compile."""
    return isinstance(_unwrap(model), GeneralizedRCNN)


TransformSignature = tuple[int | tuple[int, ...], int, tuple[float, ...], tuple[float, ...], int]


def transform_signature(model: nn.Module) -> TransformSignature:
    """``(min_size, max_size, image_mean, image_std, size_divisible)`` of a detector's GeneralizedRCNNTransform."""
    inner = _unwrap(model)
    if not isinstance(inner, GeneralizedRCNN):
        raise TypeError(f"transform_signature needs a detector (GeneralizedRCNN), got {type(inner).__name__}")
    transform = inner.transform
    min_size = tuple(int(s) for s in transform.min_size)
    return (
        min_size[0] if len(min_size) == 1 else min_size,
        int(transform.max_size),
        tuple(float(v) for v in transform.image_mean),
        tuple(float(v) for v in transform.image_std),
        int(transform.size_divisible),
    )
