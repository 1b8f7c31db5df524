"""Filtering and resampling primitives shared by the corruptions, written in torch.

* Border modes (index maps, any pad size): ``"nearest"`` (edge replicated, scipy/skimage
  default of ``gaussian``), ``"reflect"`` (scipy's half-sample symmetric ``d c b a | a b c d``)
  and ``"mirror"`` (reflect-101 ``d c b | a b c d``, OpenCV's BORDER_DEFAULT).
* Separable filters are applied as (n x n) matrices ``M_h @ x @ M_w^T``: the border mode is
  folded into the matrix, and a kernel wider than the image (ImageNet elastic: sigma 171 px)
  costs no more than a narrow one.
* :func:`disk_kernel` is make_*_c.py's ``disk``; :func:`motion_blur_taps` /
  :func:`apply_motion_blur` re-implement ImageMagick's MotionBlurImage; :func:`clipped_zoom`
  is the originals' centre crop + ``scipy.ndimage.zoom(order=1)`` + centre trim;
  :func:`box_resize_matrix` is PIL's ``Image.resize(..., BOX)`` coefficient rule.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from kdlab.eval.corruptions._common import shift_gather

BORDER_MODES = ("nearest", "reflect", "mirror")

# ImageMagick's MagickEpsilon: below it a radius means "pick one from sigma", a sigma is clamped up.
MAGICK_EPSILON = 1.0e-12

# Kernels at least this wide go through an FFT instead of a depthwise convolution (about
# equally fast at 25 x 25 on one CPU core; the FFT wins beyond).
_FFT_MIN_KERNEL = 25


def border_index(index: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Map integer positions (any range) onto [0, n) by the border ``mode``."""
    if mode == "nearest":
        return index.clamp(0, n - 1)
    if mode == "reflect":
        m = index.remainder(2 * n)
        return torch.where(m >= n, 2 * n - 1 - m, m)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(index)
        period = 2 * (n - 1)
        m = index.remainder(period)
        return torch.where(m >= n, period - m, m)
    raise ValueError(f"border mode must be one of {BORDER_MODES}, got {mode!r}")


def pad2d(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H + 2 pad, W + 2 pad) with the border ``mode`` (pad may exceed H, W)."""
    h, w = x.shape[-2:]
    rows = border_index(torch.arange(-pad, h + pad, device=x.device), h, mode)
    cols = border_index(torch.arange(-pad, w + pad, device=x.device), w, mode)
    return x.index_select(-2, rows).index_select(-1, cols)


@lru_cache(maxsize=128)
def _filter_matrix_cpu(n: int, taps: tuple[float, ...], mode: str) -> torch.Tensor:
    """(n, n) float64 matrix of the 1-D correlation ``out[i] = sum_j taps[j] x[border(i + j - r)]``."""
    r = (len(taps) - 1) // 2
    offsets = torch.arange(-r, r + 1)
    cols = border_index(torch.arange(n).view(n, 1) + offsets.view(1, -1), n, mode)
    weights = torch.tensor(taps, dtype=torch.float64).view(1, -1).expand(n, -1)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.scatter_add_(1, cols, weights.contiguous())
    return matrix


def scipy_gaussian_taps(sigma: float, truncate: float) -> tuple[float, ...]:
    """scipy.ndimage.gaussian_filter1d's taps: radius int(truncate sigma + 0.5), exp(-x^2 / 2 sigma^2), sum 1.

    sigma <= 1e-15 gives the identity tap (scipy skips such axes).
    """
    if sigma <= 1e-15:
        return (1.0,)
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return tuple((g / g.sum()).tolist())


def cv2_gaussian_taps(ksize: int, sigma: float) -> tuple[float, ...]:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0: exp(-(i - (ksize-1)/2)^2 / 2 sigma^2), sum 1."""
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma * sigma))
    return tuple((g / g.sum()).tolist())


def filter_matrix(n: int, taps: tuple[float, ...], mode: str, like: torch.Tensor) -> torch.Tensor:
    """:func:`_filter_matrix_cpu` on ``like``'s device and dtype."""
    return _filter_matrix_cpu(n, taps, mode).to(device=like.device, dtype=like.dtype)


def separable_filter(x: torch.Tensor, taps: tuple[float, ...], mode: str) -> torch.Tensor:
    """The same 1-D taps along H and W of (B, C, H, W) ``x``, border ``mode``."""
    h, w = x.shape[-2:]
    out = torch.matmul(filter_matrix(h, taps, mode, x), x)
    return torch.matmul(out, filter_matrix(w, taps, mode, x).transpose(0, 1))


def gaussian_blur(x: torch.Tensor, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian(x, sigma) per channel: scipy taps, default mode 'nearest', truncate 4."""
    if sigma <= 1e-15:
        return x
    return separable_filter(x, scipy_gaussian_taps(sigma, truncate), mode)


@lru_cache(maxsize=64)
def _disk_kernel_cpu(radius: float, alias_blur: float) -> torch.Tensor:
    half = 8 if radius <= 8 else math.ceil(radius)
    ksize = 3 if radius <= 8 else 5
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    if alias_blur > 0:
        disk = separable_filter(disk.view(1, 1, *disk.shape), cv2_gaussian_taps(ksize, alias_blur), "mirror")[0, 0]
    # Trim all-zero outer rings: small CIFAR disks live in the central 3x3 of a 17x17 array.
    nonzero = disk.abs() > 0
    extent = int(max(
        (torch.nonzero(nonzero.any(dim=1)).flatten() - half).abs().max(),
        (torch.nonzero(nonzero.any(dim=0)).flatten() - half).abs().max(),
    ))
    return disk[half - extent : half + extent + 1, half - extent : half + extent + 1].contiguous()


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The originals' defocus kernel, (k, k) float64, symmetric.

    Aliased disk ``x^2 + y^2 <= radius^2`` on the integer grid [-8, 8]^2 (or [-R, R]^2 with
    R = ceil(radius) when radius > 8), normalised to sum 1, then anti-aliased like
    ``cv2.GaussianBlur(ksize=3 (5 when radius > 8), sigmaX=alias_blur)`` with reflect-101
    borders. ``alias_blur = 0`` skips the anti-aliasing (cv2 would derive a sigma from ksize).
    Exactly-zero outer rings are trimmed, which does not change the filter.

    The sum stays 1 while the disk is inside its array. When it touches the array's border
    (radius 8, or an integer radius > 8: ImageNet severities 4 and 5) the reflect-101 blur
    folds the rim back in and the sum is 1.013 / 1.011: the original brightens those images
    by about 1 %, and so do we.
    """
    return _disk_kernel_cpu(float(radius), float(alias_blur)).clone()


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "mirror") -> torch.Tensor:
    """cv2.filter2D(x, -1, kernel) per channel for a square odd, point-symmetric kernel.

    Reflect-101 borders by default (cv2's). Wide kernels go through an FFT of the padded image
    (exactly linear convolution on the kept region, float rounding aside).
    """
    k = kernel.shape[-1]
    if k == 1:
        return x * float(kernel.reshape(-1)[0])
    r = k // 2
    b, c, h, w = x.shape
    padded = pad2d(x, r, mode)
    kern = kernel.to(device=x.device, dtype=x.dtype)
    if k < _FFT_MIN_KERNEL:
        # Depthwise (groups = B C) is several times faster on CPU than a batch of 1-channel images.
        weight = kern.view(1, 1, k, k).expand(b * c, 1, k, k)
        out = F.conv2d(padded.reshape(1, b * c, h + 2 * r, w + 2 * r), weight, groups=b * c)
        return out.view(b, c, h, w)
    hp, wp = h + 2 * r, w + 2 * r
    kpad = torch.zeros(hp, wp, device=x.device, dtype=x.dtype)
    kpad[:k, :k] = kern
    kpad = torch.roll(kpad, shifts=(-r, -r), dims=(0, 1))
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(kpad)
    out = torch.fft.irfft2(spectrum, s=(hp, wp))
    return out[..., r : r + h, r : r + w]


def motion_blur_taps(radius: float, sigma: float) -> tuple[float, ...]:
    """ImageMagick MotionBlurImage's one-sided kernel: width 2 ceil(radius) + 1, w_i ∝ exp(-i^2 / 2 sigma^2).

    i = 0 .. width-1 (tap 0 is the pixel itself), normalised to sum 1; sigma is clamped to
    MagickEpsilon. Deviation: radius 0 gives the single identity tap, where ImageMagick
    would choose a width from sigma.
    """
    width = 2 * math.ceil(radius) + 1 if radius > MAGICK_EPSILON else 1
    s = max(abs(sigma), MAGICK_EPSILON)
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2.0 * s * s))
    return tuple((k / k.sum()).tolist())


def _motion_offsets(width: int, angles_deg: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy, dx), each (B, width) long: ImageMagick's ceil(i sin a - 0.5), ceil(i cos a - 0.5)."""
    theta = torch.deg2rad(angles_deg.to(torch.float64)).view(-1, 1)
    i = torch.arange(width, device=device, dtype=torch.float64).view(1, width)
    return torch.ceil(i * torch.sin(theta) - 0.5).long(), torch.ceil(i * torch.cos(theta) - 0.5).long()


def _motion_blur_gather(x: torch.Tensor, taps: tuple[float, ...], dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Sum of per-image shifted copies, one gather per tap (cheap for few taps)."""
    h, w = x.shape[-2:]
    pad = len(taps) - 1
    padded = pad2d(x, pad, "nearest")
    out = torch.zeros_like(x)
    for tap, weight in enumerate(taps):
        if weight < 1e-9:
            continue
        out = out + weight * shift_gather(padded, pad, (h, w), dy[:, tap], dx[:, tap])
    return out


def fast_fft_size(n: int) -> int:
    """The smallest 2-3-5-smooth integer >= n (FFT sizes with large prime factors are several times slower)."""
    m = max(1, n)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _motion_blur_fft(x: torch.Tensor, taps: tuple[float, ...], dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """The same sum as one FFT convolution per image with its own line kernel (cost independent of taps).

    out(p) = sum_i w_i x(p + o_i) is a circular convolution with weight w_i at -o_i; the
    edge-replicated padding of at least len(taps) - 1 >= |o_i| on every side keeps
    wrap-around out of the kept region.
    """
    b, _, h, w = x.shape
    pad = len(taps) - 1
    hp, wp = fast_fft_size(h + 2 * pad), fast_fft_size(w + 2 * pad)
    rows = border_index(torch.arange(-pad, hp - pad, device=x.device), h, "nearest")
    cols = border_index(torch.arange(-pad, wp - pad, device=x.device), w, "nearest")
    padded = x.index_select(-2, rows).index_select(-1, cols)
    flat = (-dy).remainder(hp) * wp + (-dx).remainder(wp)
    kernel = torch.zeros(b, hp * wp, device=x.device, dtype=x.dtype)
    # One tap at a time: near 45 degrees two taps can round to the same offset, and a single
    # scatter_add with repeated indices sums in an unspecified order on CUDA.
    for tap, weight in enumerate(taps):
        kernel.scatter_add_(1, flat[:, tap : tap + 1], torch.full((b, 1), weight, device=x.device, dtype=x.dtype))
    spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(kernel.view(b, 1, hp, wp))
    return torch.fft.irfft2(spectrum, s=(hp, wp))[..., pad : pad + h, pad : pad + w]


# Measured on one CPU core: a gather costs ~5 ns per tap and pixel, the FFT route ~25 ns per
# padded pixel.
_GATHER_NS_PER_TAP_PIXEL = 5.0
_FFT_NS_PER_PADDED_PIXEL = 25.0


def apply_motion_blur(x: torch.Tensor, taps: tuple[float, ...], angles_deg: torch.Tensor, *,
                      use_fft: bool | None = None) -> torch.Tensor:
    """Per-image motion blur of (B, C, H, W) ``x`` along ``angles_deg`` (B,), ImageMagick-style.

    out(x, y) = sum_i taps[i] * img(x + ceil(i cos a - 0.5), y + ceil(i sin a - 0.5)), with the
    image y axis pointing down and edge-replicated ("Edge" virtual pixels) outside the image.
    use_fft: None picks the faster of a per-tap gather (taps below 1e-9, Gaussian tails of
    e^-20 and less, skipped) and an FFT convolution; both give the same result up to float
    rounding.
    """
    width = len(taps)
    if width == 1:
        return x * taps[0]
    dy, dx = _motion_offsets(width, angles_deg, x.device)
    if use_fft is None:
        h, w = x.shape[-2:]
        live_taps = sum(1 for weight in taps if weight >= 1e-9)
        padded_pixels = fast_fft_size(h + 2 * width - 2) * fast_fft_size(w + 2 * width - 2)
        use_fft = _FFT_NS_PER_PADDED_PIXEL * padded_pixels < _GATHER_NS_PER_TAP_PIXEL * live_taps * h * w
    if use_fft:
        return _motion_blur_fft(x, taps, dy, dx)
    return _motion_blur_gather(x, taps, dy, dx)


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Zoom (B, C, H, W) ``x`` about its centre by ``zoom`` >= 1 and keep the central H x W.

    As the originals: crop ceil(H / zoom) x ceil(W / zoom) from (H - ch) // 2, resize it
    linearly to round(ch * zoom) x round(cw * zoom) (``scipy.ndimage.zoom(order=1)`` maps corner
    samples to corner samples, i.e. ``align_corners=True``), trim (out - H) // 2 off the top.
    The original crops a square from the height only (its images are square); we crop each
    axis by its own size.
    """
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / zoom), math.ceil(w / zoom)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    oh, ow = int(round(ch * zoom)), int(round(cw * zoom))
    if (oh, ow) == (ch, cw):
        zoomed = crop
    else:
        zoomed = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    th, tw = (oh - h) // 2, (ow - w) // 2
    return zoomed[..., th : th + h, tw : tw + w]


@lru_cache(maxsize=128)
def _box_resize_matrix_cpu(in_size: int, out_size: int) -> torch.Tensor:
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    for out_i in range(out_size):
        center = (out_i + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        for in_i in range(first, stop):
            # PIL's box filter: 1 on (-0.5, 0.5], sampled at input pixel centres.
            t = (in_i - center + 0.5) / filterscale
            if -0.5 < t <= 0.5:
                matrix[out_i, in_i] = 1.0
        total = matrix[out_i].sum()
        if total > 0:
            matrix[out_i] /= total
    return matrix


def box_resize_matrix(in_size: int, out_size: int, like: torch.Tensor) -> torch.Tensor:
    """(out, in) matrix of PIL's 1-D BOX resampling (averages of whole input pixels; nearest when enlarging)."""
    return _box_resize_matrix_cpu(int(in_size), int(out_size)).to(device=like.device, dtype=like.dtype)
