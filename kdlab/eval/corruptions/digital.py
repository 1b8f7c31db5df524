"""Digital corruptions of Hendrycks & Dietterich (ICLR 2019): brightness, contrast, elastic, pixelate, JPEG.

(B, C, H, W) float images in [0, 1]; spatial strengths in pixels of these images.

* brightness: +delta on the HSV value channel, clipped (skimage rgb2hsv / hsv2rgb in the
  original). Hue and saturation are kept, so with V = max(R, G, B) and V' = clip(V + delta,
  0, 1) this is exactly ``rgb * V' / V`` (black pixels, V = 0, become grey V'). Grey images:
  ``clip(x + delta)``.
* contrast: ``(x - mean) * factor + mean`` with the mean per image *and channel* (the
  original's ``np.mean(x, axis=(0, 1))`` on an H x W x 3 array).
* elastic_transform: the original's two resamplings. First a random affine map fixed by
  three points around the centre (centre (W//2, H//2), arm min(H, W)//3, each point moved
  by U(-affine, affine) px), applied like ``cv2.warpAffine`` (bilinear, reflect-101 border);
  then a displacement field ``alpha * G_sigma * U(-1, 1)`` per axis (skimage Gaussian,
  'reflect' border, truncate 3), sampled bilinearly with scipy's 'reflect' border
  (``map_coordinates(order=1)``). Both through ``grid_sample``. Differences: cv2's 1/32 px
  fixed-point interpolation weights are exact here; the original builds its affine points
  from (H//2, W//2) read as (x, y), i.e. it assumes square images; images under 3 px use an
  arm of 1 px.
* pixelate: PIL ``resize((int(W c), int(H c)), BOX)`` then back to (W, H) with BOX, as
  matrices (:func:`box_resize_matrix`): box averages down, nearest neighbour up, in PIL's
  8-bit fixed-point arithmetic (bit-exact with PIL; inputs are first rounded to uint8, as
  the original resized uint8 PIL images).
* jpeg_compression: encode / decode at ``quality`` with torchvision.io (libjpeg, 4:2:0
  chroma subsampling for RGB, like PIL's default; the tests find PIL's output exactly), on
  the CPU, one image at a time inside torchvision (JPEG has no batched codec); the result
  goes back to the images' device. torchvision 0.29 deprecates these codecs (TorchCodec
  replaces them); the warning is silenced here.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from kdlab.eval.corruptions._common import (
    check_images,
    check_int,
    check_number,
    finish,
    resolve_generator,
    uniform,
    working,
)
from kdlab.eval.corruptions._kernels import box_resize_matrix, gaussian_blur


def brightness(images: torch.Tensor, delta: float) -> torch.Tensor:
    """Add ``delta`` to the HSV value channel (clipped to [0, 1]). Neutral: 0."""
    check_images(images)
    delta = check_number("delta", delta)
    x = working(images)
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + delta).clamp(0.0, 1.0)
    lit = value > 0
    ratio = torch.where(lit, new_value / torch.where(lit, value, torch.ones_like(value)), torch.zeros_like(value))
    out = torch.where(lit, x * ratio, new_value.expand_as(x))
    return finish(out, images)


def contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """``(x - mean) * factor + mean``, mean over H, W per image and channel. Neutral: 1."""
    check_images(images)
    factor = check_number("factor", factor, low=0.0)
    x = working(images)
    means = x.mean(dim=(-2, -1), keepdim=True)
    return finish((x - means) * factor + means, images)


def _pixel_grid(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols), each (1, H, W), of pixel-centre coordinates."""
    rows = torch.arange(h, device=like.device, dtype=like.dtype).view(1, h, 1).expand(1, h, w)
    cols = torch.arange(w, device=like.device, dtype=like.dtype).view(1, 1, w).expand(1, h, w)
    return rows, cols


def _sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, *, reflect_101: bool) -> torch.Tensor:
    """Bilinear samples of (B, C, H, W) ``x`` at pixel coordinates rows, cols (B, H, W).

    reflect_101: mirror about the outer pixel centres (cv2 BORDER_REFLECT_101); otherwise about
    the outer pixel edges (scipy mode 'reflect'). Both are grid_sample's 'reflection' padding,
    with align_corners True / False.
    """
    h, w = x.shape[-2:]
    if reflect_101:
        gx = cols * (2.0 / (w - 1)) - 1.0 if w > 1 else torch.zeros_like(cols)
        gy = rows * (2.0 / (h - 1)) - 1.0 if h > 1 else torch.zeros_like(rows)
    else:
        gx = (2.0 * cols + 1.0) / w - 1.0
        gy = (2.0 * rows + 1.0) / h - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=reflect_101)


def _random_affine_sources(b: int, h: int, w: int, jitter: float, generator: torch.Generator,
                           like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source (rows, cols), each (B, H, W), of the original's random 3-point affine warp."""
    wide = torch.empty(0, device=like.device, dtype=torch.float64)
    cx, cy = float(w // 2), float(h // 2)
    arm = float(max(min(h, w) // 3, 1))
    anchors = torch.tensor([[cx + arm, cy + arm], [cx + arm, cy - arm], [cx - arm, cy - arm]],
                           device=like.device, dtype=torch.float64)
    moved = anchors + uniform((b, 3, 2), -jitter, jitter, generator, wide)
    homogeneous = torch.cat((anchors, torch.ones(3, 1, device=like.device, dtype=torch.float64)), dim=1)
    # forward[b] (2 x 3) maps anchors to moved: homogeneous @ forward^T = moved.
    forward = torch.linalg.solve(homogeneous.expand(b, 3, 3), moved).transpose(1, 2)
    linear_inv = torch.linalg.inv(forward[:, :, :2])
    shift = forward[:, :, 2]
    rows, cols = _pixel_grid(h, w, wide)
    dest = torch.stack((cols.expand(b, h, w), rows.expand(b, h, w)), dim=-1) - shift.view(b, 1, 1, 2)
    src = torch.einsum("bij,bhwj->bhwi", linear_inv, dest)
    return src[..., 1].to(like.dtype), src[..., 0].to(like.dtype)


def elastic_transform(images: torch.Tensor, alpha: float, sigma: float, affine: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Random affine warp (corner jitter ``affine`` px) then Gaussian-smoothed displacement field.

    alpha: displacement scale (px), sigma: smoothing of the field (px), affine: point jitter
    (px). Neutral: alpha 0 and affine 0.
    """
    check_images(images)
    alpha = check_number("alpha", alpha, low=0.0)
    sigma = check_number("sigma", sigma, low=0.0)
    affine = check_number("affine", affine, low=0.0)
    x = working(images)
    b, _, h, w = x.shape
    if alpha == 0 and affine == 0:
        return finish(x, images)
    g = resolve_generator(generator, images.device)
    if affine > 0:
        src_rows, src_cols = _random_affine_sources(b, h, w, affine, g, x)
        x = _sample(x, src_rows, src_cols, reflect_101=True)
    if alpha > 0:
        noise = uniform((b, 2, h, w), -1.0, 1.0, g, x)
        field = gaussian_blur(noise, sigma, mode="reflect", truncate=3.0) * alpha
        rows, cols = _pixel_grid(h, w, x)
        x = _sample(x, rows + field[:, 1], cols + field[:, 0], reflect_101=False)
    return finish(x, images)


# PIL resamples 8-bit images in fixed point: weights scaled by 2^22 and rounded, sums rounded
# half up (Resample.c, PRECISION_BITS = 32 - 8 - 2).
_PIL_PRECISION = float(1 << 22)


def _pil_pass(levels: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """One PIL 8-bit resampling pass along ``dim`` (-1: width, -2: height) of integer-valued ``levels``.

    levels: float64 (B, C, H, W) holding 0..255; matrix: (out, in) float weights. Exact
    integer arithmetic in float64 (sums stay far below 2^53).
    """
    weights = torch.floor(0.5 + matrix.to(levels.dtype) * _PIL_PRECISION)
    if dim == -1:
        total = torch.matmul(levels, weights.transpose(0, 1))
    else:
        total = torch.matmul(weights, levels)
    return torch.floor((total + _PIL_PRECISION / 2) / _PIL_PRECISION).clamp(0.0, 255.0)


def pixelate(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Box down-sample to (int(H factor), int(W factor)) and back up (PIL BOX both ways). Neutral: 1.

    Computed as PIL does on uint8 images (the original resized PIL images): the input is
    rounded to 0..255, then each pass (horizontal, then vertical) uses PIL's fixed-point
    weights and rounding, so the result matches PIL bit for bit.
    """
    check_images(images)
    factor = check_number("factor", factor, low=0.0, high=1.0, low_open=True)
    h, w = images.shape[-2:]
    small_h, small_w = max(1, int(h * factor)), max(1, int(w * factor))
    # float64 keeps the fixed-point sums exact; MPS has no float64, so go through the CPU there.
    device = images.device if images.device.type in ("cpu", "cuda") else torch.device("cpu")
    levels = torch.round(images.detach().to(device=device, dtype=torch.float64) * 255.0)
    for size, small, dim in ((w, small_w, -1), (h, small_h, -2)):
        if small != size:
            levels = _pil_pass(levels, box_resize_matrix(size, small, levels), dim)
    for size, small, dim in ((w, small_w, -1), (h, small_h, -2)):
        if small != size:
            levels = _pil_pass(levels, box_resize_matrix(small, size, levels), dim)
    return finish(levels.to(images.device) / 255.0, images)


def jpeg_compression(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG encode / decode at ``quality`` (1..100) via torchvision.io on the CPU. No neutral quality."""
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

    check_images(images)
    quality = check_int("quality", quality, low=1)
    if quality > 100:
        raise ValueError(f"quality must be an integer in [1, 100], got {quality!r}")
    x = working(images)
    as_bytes = torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu()
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still give
        # PIL's bytes exactly (tests), and one warning per call would flood every evaluation.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        encoded = encode_jpeg(list(as_bytes.unbind(0)), quality=quality)
        decoded = decode_jpeg(encoded, mode=ImageReadMode.UNCHANGED)
    out = torch.stack(decoded).to(device=images.device, dtype=x.dtype) / 255.0
    return finish(out, images)
