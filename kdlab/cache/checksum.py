"""A position-sensitive fingerprint of each network input, to prove a replayed image is the one the teacher saw.

A plain pixel sum would not notice a flip or a rotation (they permute pixels),
so every pixel is weighted by a fixed, irregular pattern before summing. Two
different crops, flips or rotations of an image give different sums (by
O(10) for normalised images); the same image gives the same sum up to float
rounding, which :func:`checksum_tolerance` allows for.
"""

from __future__ import annotations

import torch

_GOLDEN = 0.6180339887498949
_weights: dict[tuple, torch.Tensor] = {}


def _pattern(shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    key = (shape, str(device))
    if key not in _weights:
        count = shape[0] * shape[1] * shape[2]
        ramp = torch.arange(count, dtype=torch.float64) * _GOLDEN
        _weights[key] = (0.5 + ramp.remainder(1.0)).to(torch.float32).reshape(shape).to(device)
    return _weights[key]


def input_checksums(images: torch.Tensor) -> torch.Tensor:
    """float32 (rows,) weighted sums of (..., C, H, W) images, one per (C, H, W) image, any memory format."""
    if images.ndim < 4:
        raise ValueError(f"input_checksums expects (..., C, H, W) images, got shape {tuple(images.shape)}")
    weights = _pattern(tuple(images.shape[-3:]), images.device)  # type: ignore[arg-type]
    return (images.float() * weights).sum(dim=(-3, -2, -1)).reshape(-1)


def checksum_tolerance(stored: torch.Tensor, pixels_per_image: int) -> torch.Tensor:
    """Allowed |replayed - stored| per row: float32 summation error, also across devices."""
    return 1e-5 * pixels_per_image + 1e-5 * stored.abs()
