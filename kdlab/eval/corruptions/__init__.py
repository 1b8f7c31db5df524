"""The 15 common corruptions of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (ICLR 2019), CIFAR-10-C / ImageNet-C, in torch.

``corrupt(images, name, severity)`` applies corruption ``name`` at severity 1..5 with the
published parameters (``CIFAR_PARAMS`` from make_cifar_c.py, ``IMAGENET_PARAMS`` from
make_imagenet_c.py; see :mod:`kdlab.eval.corruptions.tables`), batched and on the images'
device. Each corruption is also a function of its explicit strengths (``gaussian_noise(images,
sigma, generator)``, ``contrast(images, factor)``, ...); ``neutral_params(name)`` gives the
strengths at which it returns its input (None for jpeg_compression).

Conventions:

* images: float (B, C, H, W), C = 1 or 3, values in [0, 1] (anything else raises
  ValueError: out-of-range values usually mean normalised inputs, which are not clamped).
* output: same shape, dtype and device, clamped to [0, 1] and quantised to the uint8 grid
  ``round(255 x) / 255``. (The release stored ``np.uint8(x)``, which truncates; rounding
  is the unbiased choice and differs by at most one level.)
* randomness only from ``generator`` (a torch.Generator on the images' device; None: a
  generator seeded 0 there), so the same inputs and generator state give the same output.
* table None picks "cifar" when min(H, W) <= 64, else "imagenet"; pixel-valued parameters are
  rescaled by min(H, W) / 32 or / 224 (:func:`kdlab.eval.corruptions.tables.scale_params`).

Known differences from the release are listed in each module's docstring (noise, blur,
weather, digital); the largest: **frost uses a procedural texture instead of the release's
frost photographs, so frost numbers are not comparable to published ones**.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kdlab.eval.corruptions._common import check_images
from kdlab.eval.corruptions.blur import defocus_blur, glass_blur, motion_blur, zoom_blur
from kdlab.eval.corruptions.digital import brightness, contrast, elastic_transform, jpeg_compression, pixelate
from kdlab.eval.corruptions.noise import gaussian_noise, impulse_noise, shot_noise
from kdlab.eval.corruptions.tables import (
    CIFAR_PARAMS,
    IMAGENET_PARAMS,
    NEUTRAL_PARAMS,
    REFERENCE_SIZE,
    TABLES,
    ParamTuple,
    scale_params,
)
from kdlab.eval.corruptions.weather import fog, frost, snow

# The paper's order: noise, blur, weather, digital.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)

CORRUPTION_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}

# Corruptions that draw random numbers (take a ``generator``).
RANDOM_CORRUPTIONS: frozenset[str] = frozenset(
    {"gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
     "elastic_transform"}
)


def _check_name(name: str) -> None:
    if name not in CORRUPTION_FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}")


def _check_severity(severity: int) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")


def resolve_table(table: str | None, height: int, width: int) -> str:
    """``table`` checked, or the default for an H x W image: "cifar" if min(H, W) <= 64 else "imagenet"."""
    if table is None:
        return "cifar" if min(height, width) <= 64 else "imagenet"
    if table not in TABLES:
        raise ValueError(f"table must be one of {tuple(TABLES)} or None, got {table!r}")
    return table


def severity_params(name: str, severity: int, *, height: int, width: int, table: str | None = None) -> ParamTuple:
    """The parameters ``corrupt`` uses for ``name`` at ``severity`` on H x W images (rescaled to the size)."""
    _check_name(name)
    _check_severity(severity)
    chosen = resolve_table(table, height, width)
    params = TABLES[chosen][name][severity - 1]
    return scale_params(name, params, min(height, width) / REFERENCE_SIZE[chosen])


def neutral_params(name: str) -> ParamTuple | None:
    """Strengths at which corruption ``name`` is the identity (up to quantisation), or None if there are none."""
    _check_name(name)
    return NEUTRAL_PARAMS[name]


def apply_corruption(images: torch.Tensor, name: str, params: ParamTuple, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Corruption ``name`` with explicit strengths ``params`` (the function's arguments after ``images``)."""
    _check_name(name)
    fn = CORRUPTION_FUNCTIONS[name]
    if name in RANDOM_CORRUPTIONS:
        return fn(images, *params, generator=generator)
    return fn(images, *params)


def corrupt(images: torch.Tensor, name: str, severity: int, *, generator: torch.Generator | None = None,
            table: str | None = None) -> torch.Tensor:
    """Corrupt (B, C, H, W) ``images`` in [0, 1] with ``name`` at ``severity`` 1..5 (published parameters).

    table: "cifar" (make_cifar_c.py, 32 px), "imagenet" (make_imagenet_c.py, 224 px) or None
    (cifar when min(H, W) <= 64). Returns the same shape / dtype / device, quantised to 1/255.
    Deterministic given ``generator`` (None: seeded 0 on the images' device).
    """
    _check_name(name)
    _check_severity(severity)
    check_images(images)
    params = severity_params(name, severity, height=images.shape[-2], width=images.shape[-1], table=table)
    return apply_corruption(images, name, params, generator=generator)


__all__ = [
    "CIFAR_PARAMS",
    "CORRUPTIONS",
    "CORRUPTION_FUNCTIONS",
    "IMAGENET_PARAMS",
    "NEUTRAL_PARAMS",
    "RANDOM_CORRUPTIONS",
    "apply_corruption",
    "brightness",
    "contrast",
    "corrupt",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "gaussian_noise",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "neutral_params",
    "pixelate",
    "resolve_table",
    "severity_params",
    "shot_noise",
    "snow",
    "zoom_blur",
]
