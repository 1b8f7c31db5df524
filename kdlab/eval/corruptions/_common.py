"""Input checks, the default generator, output quantisation and small tensor helpers.

Every public corruption validates ``images`` here, computes in at least float32 and hands
its result to :func:`finish`, which clamps to [0, 1], snaps to the uint8 grid
``round(x * 255) / 255`` (the released CIFAR-10-C / ImageNet-C files are uint8) and casts
back to the input dtype.
"""

from __future__ import annotations

import math

import torch

# ITU-R 601 luma weights, as cv2.COLOR_RGB2GRAY (used by the original snow corruption).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Raise ValueError unless ``images`` is a float (B, C, H, W) tensor, C in {1, 3}, in [0, 1].

    Values outside [0, 1] are rejected rather than clamped: they almost always mean the
    images were already normalised (mean/std), and silently clamping would corrupt
    something other than what the caller thinks. Clamp explicitly if a resize overshot.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must be 4-D (B, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 (grey) or 3 (RGB) channels, got shape {tuple(images.shape)} "
            f"with C={images.shape[1]}"
        )
    if images.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got dtype {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if math.isnan(low) or math.isnan(high) or low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} must hold values in [0, 1] (unnormalised images), got values in [{low}, {high}]; "
            "clamp the input first if it only overshoots by interpolation error"
        )


def working(images: torch.Tensor) -> torch.Tensor:
    """``images`` detached and promoted to at least float32 (half precision is too coarse)."""
    return images.detach().to(torch.promote_types(images.dtype, torch.float32))


def finish(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1], quantise to the 1/255 grid and cast to ``like``'s dtype."""
    return (torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0).to(like.dtype)


def resolve_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """``generator`` checked to live on ``device``, or a fresh one seeded 0 there."""
    if generator is None:
        return torch.Generator(device=device).manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if torch.device(generator.device).type != device.type or (
        device.type != "cpu" and torch.device(generator.device).index not in (None, device.index)
    ):
        raise ValueError(
            f"generator must live on the images' device {device}, got a generator on {generator.device}"
        )
    return generator


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
            like: torch.Tensor) -> torch.Tensor:
    """Samples of U(low, high) with ``like``'s device and dtype."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return low + (high - low) * u


def gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB ``x`` (weights 0.299, 0.587, 0.114); grey input is returned as is."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def check_number(name: str, value: float, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """``value`` as a float, raising ValueError when it is not a real number in the given range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    if low is not None and (v < low or (low_open and v == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return v


def check_int(name: str, value: int, *, low: int) -> int:
    """``value`` as an int >= ``low`` (bools rejected), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def shift_gather(padded: torch.Tensor, pad: int, out_hw: tuple[int, int], dy: torch.Tensor,
                 dx: torch.Tensor) -> torch.Tensor:
    """Per-image integer shifts: out[b, :, y, x] = padded[b, :, y + pad + dy[b], x + pad + dx[b]].

    padded: (B, C, H + 2 pad, W + 2 pad); dy, dx: (B,) integer tensors with |d| <= pad.
    """
    b, c, hp, wp = padded.shape
    h, w = out_hw
    rows = torch.arange(h, device=padded.device).view(1, h, 1) + pad + dy.view(b, 1, 1)
    cols = torch.arange(w, device=padded.device).view(1, 1, w) + pad + dx.view(b, 1, 1)
    index = (rows * wp + cols).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= max(n, 2)."""
    return max(2, 1 << (int(n) - 1).bit_length())
