"""Published severity tables of the 15 corruptions and their rescaling to other image sizes.

Values are those of hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` (32 x 32,
CIFAR-10-C) and ``make_imagenet_c.py`` (224 x 224, ImageNet-C), one parameter tuple per
severity 1..5, in the argument order of the matching function (after ``images``):

==================  ==========================================================================
gaussian_noise      (sigma,)
shot_noise          (photons,)
impulse_noise       (amount,)
defocus_blur        (radius, alias_blur)                                            [px]
glass_blur          (sigma, max_delta, iterations)                              [px, px, -]
motion_blur         (radius, sigma)                                                 [px]
zoom_blur           (zoom_factors,)  exactly numpy's ``np.arange(1, stop, step)`` values
snow                (flake_mean, flake_std, flake_zoom, flake_threshold, blur_radius [px],
                     blur_sigma [px], image_weight)
frost               (image_weight, frost_weight)
fog                 (strength, wibbledecay)
brightness          (delta,)
contrast            (factor,)
elastic_transform   (alpha, sigma, affine)  [px]: CIFAR 32 * (...), ImageNet 244 * (...)
                    (the original's comment: "244 should have been 224")
pixelate            (factor,)
jpeg_compression    (quality,)
==================  ==========================================================================

Size rescaling (:func:`scale_params`): parameters marked [px] are pixel lengths of a 32 px
(cifar) or 224 px (imagenet) image. For an image of min(H, W) = n they are multiplied by
n / 32 or n / 224 (glass blur's max_delta rounded, at least 1), so the blur radius, the
elastic displacement etc. keep the same size *relative to the image*. Factors (zoom,
pixelate), probabilities, intensities and JPEG quality are size-free and kept. At the
reference size the published values are used unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

ParamTuple = tuple


def numpy_arange(start: float, stop: float, step: float) -> tuple[float, ...]:
    """The values of ``np.arange(start, stop, step)``: ceil((stop - start) / step) of them, start + i * delta.

    numpy fills with delta = (start + step) - start, so e.g. np.arange(1, 1.06, 0.01) ends
    at 1.06 (7 values): the float quotient 6.000000000000005 rounds up.
    """
    count = math.ceil((stop - start) / step)
    delta = (start + step) - start
    return tuple(start + i * delta for i in range(count))


CIFAR_PARAMS: dict[str, list[ParamTuple]] = {
    "gaussian_noise": [(0.04,), (0.06,), (0.08,), (0.09,), (0.10,)],
    "shot_noise": [(500,), (250,), (100,), (75,), (50,)],
    "impulse_noise": [(0.01,), (0.02,), (0.03,), (0.05,), (0.07,)],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [
        (numpy_arange(1, 1.06, 0.01),),
        (numpy_arange(1, 1.11, 0.01),),
        (numpy_arange(1, 1.16, 0.01),),
        (numpy_arange(1, 1.21, 0.01),),
        (numpy_arange(1, 1.26, 0.01),),
    ],
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [(0.05,), (0.1,), (0.15,), (0.2,), (0.3,)],
    "contrast": [(0.75,), (0.5,), (0.4,), (0.3,), (0.15,)],
    "elastic_transform": [
        (32 * 0, 32 * 0, 32 * 0.08),
        (32 * 0.05, 32 * 0.2, 32 * 0.07),
        (32 * 0.08, 32 * 0.06, 32 * 0.06),
        (32 * 0.1, 32 * 0.04, 32 * 0.05),
        (32 * 0.1, 32 * 0.03, 32 * 0.03),
    ],
    "pixelate": [(0.95,), (0.9,), (0.85,), (0.75,), (0.65,)],
    "jpeg_compression": [(80,), (65,), (58,), (50,), (40,)],
}

IMAGENET_PARAMS: dict[str, list[ParamTuple]] = {
    "gaussian_noise": [(0.08,), (0.12,), (0.18,), (0.26,), (0.38,)],
    "shot_noise": [(60,), (25,), (12,), (5,), (3,)],
    "impulse_noise": [(0.03,), (0.06,), (0.09,), (0.17,), (0.27,)],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [
        (numpy_arange(1, 1.11, 0.01),),
        (numpy_arange(1, 1.16, 0.01),),
        (numpy_arange(1, 1.21, 0.02),),
        (numpy_arange(1, 1.26, 0.02),),
        (numpy_arange(1, 1.31, 0.03),),
    ],
    "snow": [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    "brightness": [(0.1,), (0.2,), (0.3,), (0.4,), (0.5,)],
    "contrast": [(0.4,), (0.3,), (0.2,), (0.1,), (0.05,)],
    "elastic_transform": [
        (244 * 2, 244 * 0.7, 244 * 0.1),
        (244 * 2, 244 * 0.08, 244 * 0.2),
        (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02),
        (244 * 0.12, 244 * 0.01, 244 * 0.02),
    ],
    "pixelate": [(0.6,), (0.5,), (0.4,), (0.3,), (0.25,)],
    "jpeg_compression": [(25,), (18,), (15,), (10,), (7,)],
}

TABLES: dict[str, dict[str, list[ParamTuple]]] = {"cifar": CIFAR_PARAMS, "imagenet": IMAGENET_PARAMS}
REFERENCE_SIZE: dict[str, int] = {"cifar": 32, "imagenet": 224}

# Strengths at which each function returns its input (up to quantisation); None: no such strength.
NEUTRAL_PARAMS: dict[str, ParamTuple | None] = {
    "gaussian_noise": (0.0,),
    "shot_noise": (math.inf,),
    "impulse_noise": (0.0,),
    "defocus_blur": (0.0, 0.0),
    "glass_blur": (0.0, 1, 0),
    "motion_blur": (0.0, 0.0),
    "zoom_blur": ((1.0,),),
    "snow": (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0),
    "frost": (1.0, 0.0),
    "fog": (0.0, 2.0),
    "brightness": (0.0,),
    "contrast": (1.0,),
    "elastic_transform": (0.0, 0.0, 0.0),
    "pixelate": (1.0,),
    "jpeg_compression": None,
}


def _scale_positions(positions: tuple[int, ...],
                     rounded: tuple[int, ...] = ()) -> Callable[[ParamTuple, float], ParamTuple]:
    def rule(params: ParamTuple, scale: float) -> ParamTuple:
        out = list(params)
        for i in positions:
            out[i] = params[i] * scale
        for i in rounded:
            out[i] = max(1, int(round(params[i] * scale)))
        return tuple(out)

    return rule


SPATIAL_RULES: dict[str, Callable[[ParamTuple, float], ParamTuple]] = {
    "defocus_blur": _scale_positions((0, 1)),
    "glass_blur": _scale_positions((0,), rounded=(1,)),
    "motion_blur": _scale_positions((0, 1)),
    "snow": _scale_positions((4, 5)),
    "elastic_transform": _scale_positions((0, 1, 2)),
}


def scale_params(name: str, params: ParamTuple, scale: float) -> ParamTuple:
    """``params`` of corruption ``name`` with their pixel lengths multiplied by ``scale`` (see module doc)."""
    rule = SPATIAL_RULES.get(name)
    if rule is None or scale == 1.0:
        return tuple(params)
    return rule(params, scale)
