"""MLKD's strong view: RandAugment(2 ops) + Cutout of uint8 images, batched, with PIL's arithmetic.

The official MLKD code (``Jin-Ying/Multi-Level-Logit-Distillation``,
``mdistiller/dataset/cifar100.py``: ``RandAugment(2, 10)``, the FixMatch-style
op list) applies, after its own RandomCrop + horizontal flip, to each PIL image:

1. two ops drawn uniformly *with replacement* from the 14 below, each with a
   value drawn uniformly from the op's whole range (the magnitude argument
   ``m = 10`` is stored but never used: "deprecated" in the official code);
2. Cutout, always: a square of side ``u * 0.5 * width`` pixels, u uniform in
   [0, 1), filled with (125, 123, 114).

=============  ==================  =============================================
op             value range         what it does (PIL)
=============  ==================  =============================================
auto_contrast  (unused)            per channel, stretch [min, max] to [0, 255]
brightness     [0.05, 0.95]        blend with black (factor < 1: always darker)
color          [0.05, 0.95]        blend with the image's grey ("L") version
contrast       [0.05, 0.95]        blend with its mean grey level
equalize       (unused)            per-channel histogram equalisation
identity       (unused)            nothing
posterize      [4, 8]              keep ``int(v)`` bits (4..7 in practice)
rotate         [-30, 30]           degrees counter-clockwise about the centre
sharpness      [0.05, 0.95]        blend with the 3x3 SMOOTH filter (blurs)
shear_x        [-0.3, 0.3]         x_in = x + v * y, about the *top-left* corner
shear_y        [-0.3, 0.3]         y_in = y + v * x, about the top-left corner
solarize       [0, 256]            invert pixels >= v
translate_x    [-0.3, 0.3]         x_in = x + v * width
translate_y    [-0.3, 0.3]         y_in = y + v * height
=============  ==================  =============================================

Geometric ops sample the nearest pixel (PIL's NEAREST: the source of output
pixel (x, y) is ``floor(M (x + 0.5, y + 0.5))``, in PIL's 16.16 fixed point for
rotations and shears), outside the image black. The
blends compute ``degenerate + f * (image - degenerate)`` in float32 and
truncate, like PIL's ``Image.blend``; grey is PIL's integer
``(19595 R + 38470 G + 7471 B + 2^15) >> 16``; SMOOTH rounds its weighted mean
(kernel 1/13 with 5 at the centre) and keeps the border pixels. The official
Cutout centre is ``np.random.uniform(w)``, i.e. uniform in (1, w] (numpy's
``low=w, high=1``), not [0, w); kept. The filled square spans pixels
``int(max(0, c - s/2))`` to ``int(min(w, that + s))`` inclusive, like PIL's
``ImageDraw.rectangle``.

Parameters are drawn by :func:`sample_strong_params` from a given generator
(never a global RNG) and applied by :func:`apply_strong`, so a teacher cache
can store and replay them.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

#: the official op list, in its order (op index = position)
OPS = (
    "auto_contrast", "brightness", "color", "contrast", "equalize", "identity", "posterize",
    "rotate", "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y",
)
#: each op's value range (low, high); the value is low + (high - low) * u, u uniform in [0, 1)
OP_RANGES = {
    "auto_contrast": (0.0, 1.0), "brightness": (0.05, 0.95), "color": (0.05, 0.95), "contrast": (0.05, 0.95),
    "equalize": (0.0, 1.0), "identity": (0.0, 1.0), "posterize": (4.0, 8.0), "rotate": (-30.0, 30.0),
    "sharpness": (0.05, 0.95), "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3), "solarize": (0.0, 256.0),
    "translate_x": (-0.3, 0.3), "translate_y": (-0.3, 0.3),
}
#: ops per image (the official RandAugment(2, 10)'s n)
NUM_OPS = 2
#: Cutout side as a fraction of the width: u * CUTOUT_MAX, u uniform in [0, 1)
CUTOUT_MAX = 0.5
CUTOUT_FILL = (125, 123, 114)
#: the augmentation parameters of the strong view, one row per image
STRONG_PARAM_KEYS = ("ra_op", "ra_value", "cutout_size", "cutout_x", "cutout_y")

# ITU-R 601-2 luma in PIL's 16-bit fixed point (Convert.c, rgb2l)
_LUMA = (19595, 38470, 7471)


def sample_strong_params(generator: Optional[torch.Generator], n: int, size: int) -> dict[str, torch.Tensor]:
    """The strong-view parameters of ``n`` images of ``size`` x ``size`` pixels (CPU tensors).

    Drawn from ``generator`` only (``None``: torch's default generator, which the standard data
    path seeds per sample). ``ra_op`` (n, 2) op indices into :data:`OPS`; ``ra_value`` (n, 2)
    their values; ``cutout_size`` (n,) the Cutout side as a fraction of the width;
    ``cutout_x`` / ``cutout_y`` (n,) its centre in pixels.
    """
    ops = torch.randint(0, len(OPS), (n, NUM_OPS), generator=generator)
    unit = torch.rand((n, NUM_OPS), generator=generator, dtype=torch.float64)
    ranges = torch.tensor([OP_RANGES[name] for name in OPS], dtype=torch.float64)
    low, high = ranges[ops, 0], ranges[ops, 1]
    values = (low + (high - low) * unit).to(torch.float32)
    cutout = torch.rand(n, generator=generator, dtype=torch.float64) * CUTOUT_MAX
    # np.random.uniform(w) is uniform(low=w, high=1.0): w + (1 - w) * u, in (1, w]
    centre = size + (1 - size) * torch.rand((2, n), generator=generator, dtype=torch.float64)
    return {
        "ra_op": ops,
        "ra_value": values,
        "cutout_size": cutout.to(torch.float32),
        "cutout_x": centre[0].to(torch.float32),
        "cutout_y": centre[1].to(torch.float32),
    }


def apply_strong(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """RandAugment ops then Cutout on uint8 (N, C, H, W) images (C = 1 or 3); returns uint8 (N, C, H, W)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"the strong view expects uint8 (N, 1 or 3, H, W) images, got {images.dtype} "
                         f"{tuple(images.shape)}")
    missing = set(STRONG_PARAM_KEYS) - set(params)
    if missing:
        raise ValueError(f"strong-view parameters lack {sorted(missing)}; got keys {sorted(params)}")
    n = images.shape[0]
    if params["ra_op"].shape != (n, NUM_OPS):
        raise ValueError(f"strong-view parameters are for shape {tuple(params['ra_op'].shape)}, the batch has {n} images")
    out = images.clone()
    ops = params["ra_op"].cpu()  # one host read: which images each op touches
    values = params["ra_value"].to(images.device)
    for slot in range(NUM_OPS):
        chosen = ops[:, slot]
        for op in torch.unique(chosen).tolist():
            rows = torch.nonzero(chosen == op).squeeze(1).to(images.device)
            out[rows] = _OP_FUNCTIONS[OPS[op]](out[rows], values[rows, slot])
    return cutout(out, params["cutout_size"], params["cutout_x"], params["cutout_y"])


# -- the ops: uint8 (n, C, H, W) and per-image values (n,) -> uint8 (n, C, H, W) ------------------
def _host(values: torch.Tensor) -> torch.Tensor:
    """Per-image values as float64 on the CPU, where the geometric ops compute their source coordinates."""
    return values.detach().to(device="cpu", dtype=torch.float64)


def _wide(device: torch.device) -> torch.dtype:
    """float64 (PIL's double arithmetic), except where the device has none (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, image, f)``: float32 ``d + f * (x - d)``, clipped, truncated."""
    d = degenerate.to(torch.float32)
    mixed = d + _per_image(factor.to(torch.float32), d) * (image.to(torch.int32) - degenerate.to(torch.int32)).float()
    return mixed.clamp(0, 255).trunc().to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")`` as int32 (n, 1, H, W)."""
    if images.shape[1] == 1:
        return images.to(torch.int32)
    r, g, b = images.to(torch.int32).unbind(1)
    return ((r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2] + 0x8000) >> 16)[:, None]


def auto_contrast(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    wide = _wide(images.device)
    low = images.amin(dim=(-2, -1), keepdim=True).to(wide)
    high = images.amax(dim=(-2, -1), keepdim=True).to(wide)
    flat = high <= low
    scale = 255.0 / torch.where(flat, torch.ones_like(high), high - low)
    offset = -low * scale
    stretched = (images.to(wide) * scale + offset).trunc().clamp(0, 255).to(torch.uint8)
    return torch.where(flat, images, stretched)


def brightness(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(images), images, values)


def color(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return _blend(_grey(images).expand_as(images), images, values)


def contrast(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    mean = _grey(images).to(_wide(images.device)).mean(dim=(-3, -2, -1), keepdim=True)
    level = (mean + 0.5).floor().to(torch.int32)  # int(mean + 0.5) of a non-negative mean
    return _blend(level.expand_as(images), images, values)


def equalize(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    n, channels, height, width = images.shape
    pixels = images.reshape(n * channels, height * width).to(torch.int64)
    histogram = torch.zeros(n * channels, 256, dtype=torch.int64, device=images.device)
    histogram.scatter_add_(1, pixels, torch.ones_like(pixels))
    last = 255 - (histogram.flip(1) > 0).to(torch.int8).argmax(dim=1, keepdim=True)
    step = (height * width - histogram.gather(1, last)) // 255  # (total - count of the brightest level) // 255
    below = histogram.cumsum(dim=1) - histogram
    lut = ((step // 2 + below) // step.clamp_min(1)).clamp(0, 255)
    identity = torch.arange(256, device=images.device).expand_as(lut)
    lut = torch.where(step > 0, lut, identity)
    return lut.gather(1, pixels).reshape(images.shape).to(torch.uint8)


def identity(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return images


def posterize(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    bits = values.to(torch.float32).trunc().clamp(1, 8).to(torch.int32)
    mask = (~((1 << (8 - bits)) - 1)) & 0xFF
    return images & _per_image(mask.to(torch.uint8), images)


def solarize(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    below = images.to(torch.float32) < _per_image(values.to(torch.float32), images)  # exact: integers vs float32
    return torch.where(below, images, 255 - images)


def sharpness(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    smooth = images.clone()
    if height >= 3 and width >= 3:
        x = images.to(torch.int32)
        box = F.avg_pool2d(x.to(torch.float32), 3, stride=1, divisor_override=1).round().to(torch.int32)  # exact
        weighted = box + 4 * x[..., 1:-1, 1:-1]  # kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]]
        smooth[..., 1:-1, 1:-1] = ((2 * weighted + 13) // 26).to(torch.uint8)  # round(weighted / 13), halves up
    return _blend(smooth, images, values)


def _affine(images: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.transform(AFFINE, (a, b, c, d, e, f), NEAREST)``, outside pixels black.

    Output pixel (x, y) reads the source at ``M (x + 0.5, y + 0.5)`` rounded down. PIL evaluates
    that in 16.16 fixed point when the map mixes x and y (rotations, shears: ``affine_fixed`` in
    its Geometry.c) and in doubles otherwise (translations: ``ImagingScaleAffine``); both are
    reproduced, the fixed-point one in exact integer arithmetic (the same on every device).
    """
    n, channels, height, width = images.shape
    device = images.device
    a, b, c, d, e, f = coefficients.to(device="cpu", dtype=torch.float64).reshape(n, 6, 1, 1).unbind(1)
    xs = torch.arange(width, dtype=torch.int64).reshape(1, 1, width)
    ys = torch.arange(height, dtype=torch.int64).reshape(1, height, 1)
    if bool(((b != 0) | (d != 0)).any()):

        def fix(value: torch.Tensor) -> torch.Tensor:  # Geometry.c: FIX(v) = FLOOR(v * 65536.0 + 0.5)
            return torch.floor(value * 65536.0 + 0.5).to(torch.int64)

        offset_x, offset_y = fix(c + a * 0.5 + b * 0.5), fix(f + d * 0.5 + e * 0.5)
        source_x = (offset_x + xs * fix(a) + ys * fix(b)) >> 16
        source_y = (offset_y + xs * fix(d) + ys * fix(e)) >> 16
    else:
        source_x = (a * (xs + 0.5) + c).floor().to(torch.int64).expand(n, height, width)
        source_y = (e * (ys + 0.5) + f).floor().to(torch.int64).expand(n, height, width)
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    index = source_y.clamp(0, height - 1) * width + source_x.clamp(0, width - 1)
    index, inside = index.to(device), inside.to(device)
    flat = images.reshape(n, channels, height * width)
    picked = flat.gather(2, index.reshape(n, 1, height * width).expand(n, channels, -1))
    picked = picked.reshape(n, channels, height, width)
    return torch.where(inside[:, None], picked, torch.zeros_like(picked))


def _coefficients(*columns: torch.Tensor) -> torch.Tensor:
    return torch.stack(columns, dim=1)


def rotate(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    angle = -torch.deg2rad(torch.remainder(_host(values), 360.0))
    cos, sin = torch.round(torch.cos(angle), decimals=15), torch.round(torch.sin(angle), decimals=15)
    centre_x, centre_y = width / 2, height / 2
    # PIL's Image.rotate: the inverse rotation about the centre
    shift_x = cos * -centre_x + sin * -centre_y + centre_x
    shift_y = -sin * -centre_x + cos * -centre_y + centre_y
    return _affine(images, _coefficients(cos, sin, shift_x, -sin, cos, shift_y))


def shear_x(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    v = _host(values)
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _affine(images, _coefficients(one, v, zero, zero, one, zero))


def shear_y(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    v = _host(values)
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _affine(images, _coefficients(one, zero, zero, v, one, zero))


def translate_x(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    v = _host(values) * images.shape[-1]
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _affine(images, _coefficients(one, zero, v, zero, one, zero))


def translate_y(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    v = _host(values) * images.shape[-2]
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    return _affine(images, _coefficients(one, zero, zero, zero, one, v))


_OP_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "auto_contrast": auto_contrast, "brightness": brightness, "color": color, "contrast": contrast,
    "equalize": equalize, "identity": identity, "posterize": posterize, "rotate": rotate,
    "sharpness": sharpness, "shear_x": shear_x, "shear_y": shear_y, "solarize": solarize,
    "translate_x": translate_x, "translate_y": translate_y,
}


def cutout(images: torch.Tensor, size: torch.Tensor, centre_x: torch.Tensor, centre_y: torch.Tensor) -> torch.Tensor:
    """The official Cutout: a square of side ``size * width`` around (centre_x, centre_y), grey (125, 123, 114)."""
    n, channels, height, width = images.shape
    device, wide = images.device, _wide(images.device)
    side = size.to(device=device, dtype=wide) * width
    x0 = (centre_x.to(device=device, dtype=wide) - side / 2).clamp_min(0).floor()
    y0 = (centre_y.to(device=device, dtype=wide) - side / 2).clamp_min(0).floor()
    x1 = torch.minimum(x0 + side, torch.full_like(x0, width)).floor()
    y1 = torch.minimum(y0 + side, torch.full_like(y0, height)).floor()
    columns = torch.arange(width, device=device, dtype=wide)
    rows = torch.arange(height, device=device, dtype=wide)
    in_x = (columns >= x0[:, None]) & (columns <= x1[:, None])
    in_y = (rows >= y0[:, None]) & (rows <= y1[:, None])
    square = (in_y[:, :, None] & in_x[:, None, :]) & (side > 0)[:, None, None]  # no square for a zero side
    fill = torch.tensor(CUTOUT_FILL[:channels] if channels == 3 else CUTOUT_FILL[:1], dtype=torch.uint8, device=device)
    return torch.where(square[:, None], fill.reshape(1, channels, 1, 1), images)


__all__ = [
    "CUTOUT_FILL", "CUTOUT_MAX", "NUM_OPS", "OPS", "OP_RANGES", "STRONG_PARAM_KEYS", "apply_strong",
    "cutout", "sample_strong_params",
]
