"""What a network expects at its input, and images in [0, 1] brought to it.

Evaluation sets other than the training data (corrupted copies, other datasets, a reference
network trained with another normalisation or resolution) meet a network through the unit
range: a stream's normalised batch is mapped back to [0, 1] with the stream's statistics, then
resized, given the network's channel count and normalised with the network's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

#: ITU-R BT.601 luma weights, to turn RGB into one grey channel
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class InputSpec:
    """A network's input: channels, square resolution and per-channel normalisation."""

    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, in_chans: int, image_size: int, mean: Sequence[float], std: Sequence[float]) -> "InputSpec":
        return cls(int(in_chans), int(image_size), tuple(float(v) for v in mean), tuple(float(v) for v in std))


def _stats(values: Sequence[float], channels: int, like: torch.Tensor) -> torch.Tensor:
    stats = torch.tensor(list(values), dtype=like.dtype, device=like.device)
    if stats.numel() == 1 and channels > 1:
        stats = stats.expand(channels)
    if stats.numel() != channels:
        raise ValueError(f"{stats.numel()} normalisation values for {channels}-channel images")
    return stats.view(1, channels, 1, 1)


def to_unit(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (B, C, H, W) images back to [0, 1]: ``x * std + mean``, clamped."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    images = images.float()
    channels = images.shape[1]
    return (images * _stats(std, channels, images) + _stats(mean, channels, images)).clamp_(0.0, 1.0)


def to_input(unit: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """[0, 1] images (B, C, H, W) as ``spec``'s network reads them.

    Resized to ``spec.image_size`` (bilinear, antialiased when shrinking) when their size
    differs; grey images repeated to 3 channels and RGB ones reduced to their luma for a
    1-channel network; then normalised with ``spec.mean`` / ``spec.std``.
    """
    if unit.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(unit.shape)}")
    if unit.shape[-2:] != (spec.image_size, spec.image_size):
        shrink = min(unit.shape[-2:]) > spec.image_size
        unit = F.interpolate(unit, size=(spec.image_size, spec.image_size), mode="bilinear",
                             align_corners=False, antialias=shrink).clamp_(0.0, 1.0)
    channels = unit.shape[1]
    if channels != spec.in_chans:
        if channels == 1:
            unit = unit.expand(-1, spec.in_chans, -1, -1)
        elif channels == 3 and spec.in_chans == 1:
            unit = (unit * torch.tensor(_LUMA, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)).sum(1, True)
        else:
            raise ValueError(f"cannot feed {channels}-channel images to a {spec.in_chans}-channel network")
    return (unit - _stats(spec.mean, spec.in_chans, unit)) / _stats(spec.std, spec.in_chans, unit)
