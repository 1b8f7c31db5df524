"""The options of ``create_model("det:...", **kwargs)``, checked before anything is built.

Checking up front turns a typo (``min_sise=``) or a wrong type into one
ValueError naming the option and the accepted ones, instead of a TypeError
deep inside torchvision or, worse, an option silently ignored.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: FasterRCNN's RPN / RoI sampling options, passed through unchanged (torchvision's defaults when unset)
INT_PASSTHROUGH = (
    "rpn_pre_nms_top_n_train",
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train",
    "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image",
    "box_batch_size_per_image",
    "box_detections_per_img",
)
FRACTION_PASSTHROUGH = (
    "box_score_thresh",
    "box_nms_thresh",
    "rpn_nms_thresh",
    "rpn_score_thresh",
    "rpn_fg_iou_thresh",
    "rpn_bg_iou_thresh",
    "rpn_positive_fraction",
    "box_fg_iou_thresh",
    "box_bg_iou_thresh",
    "box_positive_fraction",
)
#: options of the backbone, the FPN, the box head and the transform
OWN_OPTIONS = (
    "backbone_checkpoint",
    "backbone_kwargs",
    "returned_stages",
    "fpn_channels",
    "trainable_backbone_layers",
    "freeze_batchnorm",
    "representation_size",
    "min_size",
    "max_size",
    "image_mean",
    "image_std",
    "size_divisible",
    "anchor_sizes",
    "aspect_ratios",
)
ACCEPTED = OWN_OPTIONS + INT_PASSTHROUGH + FRACTION_PASSTHROUGH


@dataclass(frozen=True)
class DetectorOptions:
    """Validated detector options; see :func:`kdlab.models.detection.create_detector` for their meaning."""

    backbone_checkpoint: Any = None
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    returned_stages: tuple[int, ...] | None = None
    fpn_channels: int = 256
    trainable_backbone_layers: int | None = None
    freeze_batchnorm: bool | None = None
    representation_size: int = 1024
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    size_divisible: int = 32
    #: one tuple of sizes per FPN level, or None for sizes derived from ``min_size``
    anchor_sizes: tuple[tuple[float, ...], ...] | None = None
    #: one tuple per FPN level, or one tuple for every level
    aspect_ratios: tuple[tuple[float, ...], ...] | tuple[float, ...] = (0.5, 1.0, 2.0)
    #: the FasterRCNN sampling options the caller set (others keep torchvision's defaults)
    sampling: Mapping[str, Any] = field(default_factory=dict)

    def transform_kwargs(self) -> dict[str, Any]:
        """FasterRCNN's transform arguments (GeneralizedRCNNTransform)."""
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "size_divisible": self.size_divisible,
        }

    def non_default(self, *names: str) -> list[str]:
        """Those of ``names`` set to something other than their default."""
        defaults = DetectorOptions()
        return [n for n in names if getattr(self, n) != getattr(defaults, n)]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"detector option {name} must be a positive int, got {value!r}")
    return int(value)


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"detector option {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _floats(name: str, value: Any, length: int | None = None) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"detector option {name} must be a non-empty sequence of numbers, got {value!r}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"detector option {name} must hold positive numbers, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"detector option {name} must have {length} entries (one per channel), got {value!r}")
    return tuple(float(v) for v in value)


def _per_level(name: str, value: Any) -> tuple[tuple[float, ...], ...] | tuple[float, ...]:
    """``[a, b, c]`` (flat) or ``[[a], [b, c]]`` (one entry per FPN level)."""
    if isinstance(value, Sequence) and value and all(isinstance(v, Sequence) for v in value):
        return tuple(_floats(name, v) for v in value)
    return _floats(name, value)


def _stages(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    stages = value if isinstance(value, Sequence) and not isinstance(value, str) else None
    if not stages or not all(isinstance(s, int) and not isinstance(s, bool) for s in stages):
        raise ValueError(f"detector option returned_stages must be a non-empty list of ints, got {value!r}")
    if list(stages) != sorted(set(stages)):
        raise ValueError(f"detector option returned_stages must be strictly increasing, got {value!r}")
    return tuple(stages)


def parse_options(kwargs: Mapping[str, Any]) -> DetectorOptions:
    """Validate ``kwargs``; an unknown option raises ValueError listing the accepted ones."""
    unknown = [k for k in kwargs if k not in ACCEPTED]
    if unknown:
        raise ValueError(
            f"detector has no option {', '.join(repr(k) for k in unknown)}; it accepts: {', '.join(ACCEPTED)}"
        )
    values: dict[str, Any] = {}
    sampling: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in INT_PASSTHROUGH:
            sampling[key] = _positive_int(key, value)
        elif key in FRACTION_PASSTHROUGH:
            sampling[key] = _fraction(key, value)
        elif key in ("fpn_channels", "representation_size", "min_size", "max_size", "size_divisible"):
            values[key] = _positive_int(key, value)
        elif key == "backbone_kwargs":
            if value is None:
                value = {}
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"detector option backbone_kwargs must be a dict of keyword options, got {value!r}")
            values[key] = dict(value)
        elif key == "returned_stages":
            values[key] = _stages(value)
        elif key == "trainable_backbone_layers":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(
                    f"detector option trainable_backbone_layers must be an int >= 0 or None, got {value!r}"
                )
            values[key] = value
        elif key == "freeze_batchnorm":
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"detector option freeze_batchnorm must be True, False or None, got {value!r}")
            values[key] = value
        elif key in ("image_mean", "image_std"):
            values[key] = _floats(key, value, length=3)
        elif key == "anchor_sizes":
            if value is not None:
                sizes = _per_level(key, value)
                value = tuple(s if isinstance(s, tuple) else (s,) for s in sizes)  # flat: one size per level
            values[key] = value
        elif key == "aspect_ratios":
            values[key] = _per_level(key, value)
        else:  # backbone_checkpoint: a path, checked when it is read
            values[key] = value
    options = DetectorOptions(**values, sampling=sampling)
    if options.max_size < options.min_size:
        raise ValueError(f"detector option max_size ({options.max_size}) must be >= min_size ({options.min_size})")
    return options
