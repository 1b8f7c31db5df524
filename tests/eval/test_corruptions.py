"""The 15 common corruptions (kdlab.eval.corruptions) against their contract and naive references.

References are independent: python loops in float64, colorsys, PIL (pixelate, JPEG), scipy.ndimage
(Gaussian filter, zoom, map_coordinates, correlate: what the original scripts called) and a
literal numpy transcription of the original glass-blur loop, including its view semantics.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch

from kdlab.eval.corruptions import (
    CIFAR_PARAMS,
    CORRUPTION_FUNCTIONS,
    CORRUPTIONS,
    IMAGENET_PARAMS,
    RANDOM_CORRUPTIONS,
    apply_corruption,
    brightness,
    contrast,
    corrupt,
    defocus_blur,
    fog,
    frost,
    gaussian_noise,
    impulse_noise,
    jpeg_compression,
    neutral_params,
    pixelate,
    severity_params,
    shot_noise,
    zoom_blur,
)
from kdlab.eval.corruptions._kernels import (
    apply_motion_blur,
    clipped_zoom,
    disk_kernel,
    filter2d,
    gaussian_blur,
    motion_blur_taps,
)
from kdlab.eval.corruptions.blur import pixel_copy_sweep, sweep_region
from kdlab.eval.corruptions.digital import _sample
from kdlab.eval.corruptions.fractal import plasma_fractal
from kdlab.eval.corruptions.weather import FROST_GREY_MEAN, FROST_GREY_STD, frost_texture

SEVERITIES = (1, 2, 3, 4, 5)
STEP = 1.0 / 255.0


def on_grid(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 255.0) / 255.0


def random_images(b: int, c: int, h: int, w: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return on_grid(torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))).to(dtype)


def smooth_images(size: int, count: int = 6) -> torch.Tensor:
    """A few gradient / sinusoid colour patterns, on the uint8 grid."""
    axis = torch.linspace(0, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    images = []
    for k in range(count):
        f = 1 + k % 3
        red = 0.5 + 0.35 * torch.sin(2 * math.pi * f * xx + k)
        green = 0.5 + 0.35 * torch.cos(2 * math.pi * (f * yy + 0.5 * xx))
        blue = 0.2 + 0.3 * (xx + yy)
        images.append(torch.stack([red, green, blue]))
    return on_grid(torch.stack(images).float())


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


# ---------------------------------------------------------------------------------------------
# names and tables


def test_names_order_and_tables():
    assert CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
        "jpeg_compression",
    )
    for table in (CIFAR_PARAMS, IMAGENET_PARAMS):
        assert set(table) == set(CORRUPTIONS) == set(CORRUPTION_FUNCTIONS)
        assert all(len(rows) == 5 for rows in table.values())
    # spot checks against make_cifar_c.py / make_imagenet_c.py
    assert [p[0] for p in CIFAR_PARAMS["gaussian_noise"]] == [0.04, 0.06, 0.08, 0.09, 0.10]
    assert [p[0] for p in IMAGENET_PARAMS["jpeg_compression"]] == [25, 18, 15, 10, 7]
    assert CIFAR_PARAMS["glass_blur"][3] == (0.25, 1, 2)
    assert IMAGENET_PARAMS["snow"][4] == (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)
    assert CIFAR_PARAMS["elastic_transform"][1] == pytest.approx((1.6, 6.4, 2.24))
    assert IMAGENET_PARAMS["elastic_transform"][0] == pytest.approx((488, 170.8, 24.4))


def test_zoom_factors_are_numpys_arange():
    for table, stops in ((CIFAR_PARAMS, [(1.06, .01), (1.11, .01), (1.16, .01), (1.21, .01), (1.26, .01)]),
                         (IMAGENET_PARAMS, [(1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03)])):
        for (factors,), (stop, step) in zip(table["zoom_blur"], stops):
            assert list(factors) == np.arange(1, stop, step).tolist()
    assert len(CIFAR_PARAMS["zoom_blur"][0][0]) == 7  # np.arange(1, 1.06, 0.01) includes 1.06


def test_table_choice_and_size_scaling():
    assert severity_params("motion_blur", 1, height=32, width=32) == (6, 1)
    assert severity_params("motion_blur", 1, height=64, width=80) == (12, 2)  # cifar table, x2
    assert severity_params("motion_blur", 1, height=65, width=65) == pytest.approx((10 * 65 / 224, 3 * 65 / 224))
    assert severity_params("motion_blur", 2, height=224, width=300) == (15, 5)
    assert severity_params("defocus_blur", 5, height=112, width=112, table="imagenet") == (5.0, 0.25)
    assert severity_params("glass_blur", 5, height=112, width=112, table="imagenet") == (0.75, 2, 2)
    assert severity_params("glass_blur", 2, height=16, width=16) == (0.125, 1, 1)  # max_delta stays >= 1
    assert severity_params("snow", 1, height=64, width=64)[4:6] == (16, 6)
    assert severity_params("elastic_transform", 2, height=16, width=16) == pytest.approx((0.8, 3.2, 1.12))
    # size-free parameters are kept
    assert severity_params("pixelate", 3, height=100, width=100) == (0.4,)
    assert severity_params("zoom_blur", 1, height=128, width=128, table="cifar") == CIFAR_PARAMS["zoom_blur"][0]


# ---------------------------------------------------------------------------------------------
# contract: every name x severity


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_contract_every_severity(name):
    rgb = random_images(2, 3, 20, 26, seed=1)  # non-square
    grey = random_images(2, 1, 18, 16, seed=2)
    for severity in SEVERITIES:
        for images in (rgb, grey):
            out = corrupt(images, name, severity, generator=seeded(5))
            assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
            assert torch.equal(out, on_grid(out)), "output must lie on the 1/255 grid"
            again = corrupt(images, name, severity, generator=seeded(5))
            assert torch.equal(out, again), "same generator seed must give the same output"
        if name in RANDOM_CORRUPTIONS:
            other = corrupt(rgb, name, severity, generator=seeded(6))
            assert not torch.equal(other, corrupt(rgb, name, severity, generator=seeded(5)))
    # None: a generator seeded 0
    assert torch.equal(corrupt(rgb, name, 3), corrupt(rgb, name, 3, generator=seeded(0)))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_tiny_images(name):
    for shape in ((1, 3, 1, 1), (2, 3, 1, 5), (1, 1, 3, 3), (1, 3, 7, 2)):
        images = random_images(*shape, seed=sum(shape))
        for severity in (1, 5):
            out = corrupt(images, name, severity)
            assert out.shape == images.shape and torch.equal(out, on_grid(out)) and not out.isnan().any()


def test_dtypes_kept_and_generator_state_advances():
    images = random_images(2, 3, 16, 16, seed=4, dtype=torch.float64)
    out = corrupt(images, "gaussian_noise", 2)
    assert out.dtype == torch.float64
    half = corrupt(images.half(), "fog", 2)
    assert half.dtype == torch.float16
    g = seeded(3)
    first, second = gaussian_noise(images, 0.1, g), gaussian_noise(images, 0.1, g)
    assert not torch.equal(first, second)


# ---------------------------------------------------------------------------------------------
# neutral strengths


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "jpeg_compression"])
def test_neutral_strength_is_identity(name):
    params = neutral_params(name)
    assert params is not None
    for images in (random_images(2, 3, 17, 23, seed=7), random_images(1, 1, 12, 12, seed=8)):
        out = apply_corruption(images, name, params, generator=seeded(1))
        assert torch.equal(out, images), name
    off_grid = torch.rand(1, 3, 9, 9, generator=seeded(2))
    assert torch.equal(apply_corruption(off_grid, name, params), on_grid(off_grid))


def test_jpeg_has_no_neutral_strength():
    assert neutral_params("jpeg_compression") is None


# ---------------------------------------------------------------------------------------------
# monotone in severity


# Published tables that are not monotone in mean squared difference (documented in tables.py):
#  * glass_blur: a larger sigma pre-blurs the image so the pixel moves change less (MSE falls
#    from severity 2 to 3 and 4 to 5); two sweeps (severities 4, 5) beat one (1-3).
#  * frost: the image weight falls while the frost weight rises (0.9/0.4, 0.85/0.4, 0.75/0.45):
#    the MSE peaks at severity 3.
#  * elastic_transform: CIFAR severity 1 is a pure random affine (2.56 px corner jitter), the
#    affine jitter then shrinks while the sub-pixel elastic part grows; MSE falls.
NOT_MONOTONE = {"glass_blur", "frost", "elastic_transform"}


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n not in NOT_MONOTONE])
def test_mse_grows_with_severity_cifar(name):
    images = smooth_images(32)
    errors = [mse(corrupt(images, name, s, generator=seeded(11)), images) for s in SEVERITIES]
    assert all(b >= a - 1e-9 for a, b in zip(errors, errors[1:])), (name, errors)
    assert errors[-1] > errors[0]


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "defocus_blur", "motion_blur", "zoom_blur",
                                  "fog", "brightness", "contrast", "pixelate", "jpeg_compression"])
def test_mse_grows_with_severity_imagenet_table_64px(name):
    images = smooth_images(64, count=3)
    errors = [mse(corrupt(images, name, s, generator=seeded(12), table="imagenet"), images) for s in SEVERITIES]
    assert all(b >= a - 1e-9 for a, b in zip(errors, errors[1:])), (name, errors)


def test_documented_exceptions_weaker_orderings():
    images = smooth_images(32)
    glass = [mse(corrupt(images, "glass_blur", s, generator=seeded(11)), images) for s in SEVERITIES]
    assert min(glass[3:]) > max(glass[:3])
    frost_err = [mse(corrupt(images, "frost", s, generator=seeded(11)), images) for s in SEVERITIES]
    assert frost_err[0] < frost_err[1] < frost_err[2]


# ---------------------------------------------------------------------------------------------
# noise against statistics


def test_gaussian_noise_statistics():
    images = torch.full((2, 3, 64, 64), 128 / 255)
    diff = (gaussian_noise(images, 0.05, seeded(0)) - images).double()
    assert abs(float(diff.mean())) < 3 * 0.05 / math.sqrt(diff.numel())
    assert float(diff.std()) == pytest.approx(0.05, rel=0.03)


def test_shot_noise_statistics():
    images = torch.full((2, 3, 64, 64), 102 / 255)
    out = shot_noise(images, 60, seeded(0)).double()
    # Poisson(x c) / c: mean x, variance x / c (quantisation adds ~1/(12 * 255^2))
    assert float(out.mean()) == pytest.approx(102 / 255, abs=3 * math.sqrt(0.4 / 60 / out.numel()))
    assert float(out.var()) == pytest.approx((102 / 255) / 60, rel=0.05)


def test_impulse_noise_fraction():
    images = on_grid(0.2 + 0.6 * torch.rand(4, 3, 40, 40, generator=seeded(1)))  # never 0 or 1
    amount = 0.09
    out = impulse_noise(images, amount, seeded(2))
    hit = out != images
    assert float(hit.float().mean()) == pytest.approx(amount, abs=4 * math.sqrt(amount / hit.numel()))
    assert set(out[hit].unique().tolist()) <= {0.0, 1.0}
    assert float((out[hit] == 1).float().mean()) == pytest.approx(0.5, abs=0.06)


# ---------------------------------------------------------------------------------------------
# digital formulas against loops


def test_contrast_against_float64_loop():
    images = random_images(2, 3, 5, 7, seed=9)
    factor = 0.3
    out = contrast(images, factor)
    x = images.double().tolist()
    for b in range(2):
        for c in range(3):
            values = [v for row in x[b][c] for v in row]
            mean = sum(values) / len(values)
            for i in range(5):
                for j in range(7):
                    expected = min(max((x[b][c][i][j] - mean) * factor + mean, 0.0), 1.0)
                    # within half a level of the exact value (float32 may round a tie either way)
                    assert abs(float(out[b, c, i, j]) - expected) <= 0.5 * STEP + 1e-6


def test_brightness_against_colorsys_hsv():
    pixels = torch.tensor([[0.2, 0.4, 0.6], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 0.1, 0.3],
                           [0.9, 0.95, 0.7], [0.01, 0.3, 0.02]])
    images = on_grid(pixels.T.reshape(1, 3, 2, 3))
    for delta in (0.1, 0.3, -0.2):
        out = brightness(images, delta)
        flat_in = images.reshape(3, -1).T.double().tolist()
        flat_out = out.reshape(3, -1).T.double().tolist()
        for rgb, got in zip(flat_in, flat_out):
            h, s, v = colorsys.rgb_to_hsv(*rgb)
            expected = colorsys.hsv_to_rgb(h, s, min(max(v + delta, 0.0), 1.0))
            assert max(abs(g - e) for g, e in zip(got, expected)) <= 0.5 * STEP + 1e-6
    grey = random_images(1, 1, 4, 4, seed=3)
    assert torch.equal(brightness(grey, 0.2), on_grid((grey + 0.2).clamp(0, 1)))


def _pil_box_weights(in_size: int, out_size: int) -> list[list[float]]:
    """PIL's BOX coefficients by loops (Resample.c precompute_coeffs)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    rows = []
    for out_i in range(out_size):
        center = (out_i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        row = [0.0] * in_size
        for i in range(lo, hi):
            if -0.5 < (i - center + 0.5) / filterscale <= 0.5:
                row[i] = 1.0
        total = sum(row)
        rows.append([v / total for v in row])
    return rows


def _pil_pass_loop(img: list[list[int]], weights: list[list[float]], axis: int) -> list[list[int]]:
    """One fixed-point PIL pass by loops along axis 1 (width) or 0 (height)."""
    one = 1 << 22
    q = [[int(0.5 + w * one) for w in row] for row in weights]
    if axis == 0:
        img = [list(col) for col in zip(*img)]
    out = [[min(max((sum(p * k for p, k in zip(line, qrow)) + one // 2) >> 22, 0), 255) for qrow in q] for line in img]
    return [list(col) for col in zip(*out)] if axis == 0 else out


def test_pixelate_against_pil_formula_loop_and_pil():
    from PIL import Image

    h, w, factor = 13, 18, 0.6
    images = random_images(1, 3, h, w, seed=10)
    out = pixelate(images, factor)
    sh, sw = int(h * factor), int(w * factor)
    levels = torch.round(images[0] * 255).long()
    for c in range(3):
        img = levels[c].tolist()
        img = _pil_pass_loop(img, _pil_box_weights(w, sw), 1)
        img = _pil_pass_loop(img, _pil_box_weights(h, sh), 0)
        img = _pil_pass_loop(img, _pil_box_weights(sw, w), 1)
        img = _pil_pass_loop(img, _pil_box_weights(sh, h), 0)
        assert torch.equal(torch.round(out[0, c] * 255).long(), torch.tensor(img))
    for size, f in ((32, 0.65), (32, 0.95), (20, 0.3)):
        images = random_images(1, 3, size, size + 3, seed=size)
        u8 = torch.round(images[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        ref = Image.fromarray(u8).resize((int((size + 3) * f), int(size * f)), Image.BOX).resize((size + 3, size),
                                                                                                  Image.BOX)
        ref_t = torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255
        assert torch.equal(pixelate(images, f)[0], ref_t)


def test_jpeg_quality_orders_error_and_matches_pil():
    from PIL import Image

    images = smooth_images(32, count=2)
    errors = {q: mse(jpeg_compression(images, q), images) for q in (100, 80, 40, 10)}
    assert errors[100] < errors[80] < errors[40] < errors[10]
    assert errors[100] < 0.25 * errors[40]
    # quality 100: near identity up to the 4:2:0 chroma subsampling (exact-ish on grey images)
    grey = smooth_images(32, count=2)[:, :1]
    assert float((jpeg_compression(grey, 100) - grey).abs().mean()) < 0.5 * STEP
    assert float((jpeg_compression(images, 100) - images).abs().mean()) < 3 * STEP
    u8 = torch.round(images[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(u8).save(buffer, "JPEG", quality=58)
    ref = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255
    assert (jpeg_compression(images[:1], 58)[0] - ref).abs().max() <= STEP + 1e-6
    grey = jpeg_compression(random_images(2, 1, 16, 16, seed=1), 50)
    assert grey.shape == (2, 1, 16, 16)


# ---------------------------------------------------------------------------------------------
# blur kernels against references


def _disk_loop(radius: float, alias_blur: float) -> list[list[float]]:
    """make_*_c.py's disk by loops: aliased disk, then 3x3 (5x5) cv2 Gaussian, reflect-101 borders."""
    half = 8 if radius <= 8 else math.ceil(radius)
    ksize = 3 if radius <= 8 else 5
    n = 2 * half + 1
    disk = [[1.0 if (i - half) ** 2 + (j - half) ** 2 <= radius ** 2 else 0.0 for j in range(n)] for i in range(n)]
    total = sum(map(sum, disk))
    disk = [[v / total for v in row] for row in disk]
    r = ksize // 2
    g = [math.exp(-((t - r) ** 2) / (2 * alias_blur ** 2)) for t in range(ksize)]
    g = [v / sum(g) for v in g]

    def mirror(i: int) -> int:
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    rows = [[sum(g[t] * disk[mirror(i + t - r)][j] for t in range(ksize)) for j in range(n)] for i in range(n)]
    return [[sum(g[t] * rows[i][mirror(j + t - r)] for t in range(ksize)) for j in range(n)] for i in range(n)]


DEFOCUS_ROWS = sorted(set(CIFAR_PARAMS["defocus_blur"] + IMAGENET_PARAMS["defocus_blur"]))


@pytest.mark.parametrize("radius,alias_blur", DEFOCUS_ROWS)
def test_defocus_kernel_against_loop(radius, alias_blur):
    kernel = disk_kernel(radius, alias_blur)
    ref = torch.tensor(_disk_loop(radius, alias_blur), dtype=torch.float64)
    trim = (ref.shape[0] - kernel.shape[0]) // 2
    assert torch.allclose(kernel, ref[trim: ref.shape[0] - trim, trim: ref.shape[0] - trim], atol=1e-12)
    assert float(ref.abs().sum() - kernel.abs().sum()) == pytest.approx(0.0, abs=1e-12)  # only zeros trimmed
    assert torch.allclose(kernel, kernel.T) and torch.allclose(kernel, kernel.flip(0))
    if radius < 8:  # the disk stays inside its array: the anti-aliasing conserves mass
        assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    else:
        # as in the original, reflect-101 borders fold the blurred rim back in (ImageNet severities 4, 5)
        assert 1.0 < float(kernel.sum()) < 1.02


def test_filter2d_and_gaussian_blur_against_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 2, 21, 30, generator=seeded(4), dtype=torch.float64)
    for radius, alias_blur in ((1.5, 0.1), (10, 0.5)):  # direct and FFT paths
        k = disk_kernel(radius, alias_blur)
        ref = np.stack([ndimage.correlate(x[0, c].numpy(), k.numpy(), mode="mirror") for c in range(2)])
        assert np.abs(filter2d(x, k)[0].numpy() - ref).max() < 1e-12
    for sigma, mode, truncate in ((0.7, "nearest", 4.0), (6.4, "reflect", 3.0), (50.0, "reflect", 3.0)):
        ref = ndimage.gaussian_filter(x.numpy(), (0, 0, sigma, sigma), mode=mode, truncate=truncate)
        assert np.abs(gaussian_blur(x, sigma, mode=mode, truncate=truncate).numpy() - ref).max() < 1e-12


def test_clipped_zoom_against_scipy_zoom():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 3, 32, 32, generator=seeded(5), dtype=torch.float64)
    hwc = x[0].permute(1, 2, 0).numpy()
    for zoom in (1.0, 1.06, 1.13, 1.75, 4.5):
        ch = math.ceil(32 / zoom)
        top = (32 - ch) // 2
        zoomed = ndimage.zoom(hwc[top: top + ch, top: top + ch], (zoom, zoom, 1), order=1)
        trim = (zoomed.shape[0] - 32) // 2
        ref = zoomed[trim: trim + 32, trim: trim + 32]
        assert np.abs(clipped_zoom(x, zoom)[0].permute(1, 2, 0).numpy() - ref).max() < 1e-12
    assert zoom_blur(x.float(), (1.0, 1.1)).shape == (1, 3, 32, 32)


def test_glass_sweep_matches_the_original_numpy_loop():
    for d in (1, 2, 3):
        h, w = 11, 14
        x = torch.rand(2, 3, h, w, generator=seeded(d), dtype=torch.float64)
        rows, cols = sweep_region(h, w, d)
        moves = torch.randint(-d, d, (2, rows.numel(), cols.numel(), 2), generator=seeded(10 + d))
        out = pixel_copy_sweep(x, d, moves)
        for b in range(2):
            arr = x[b].permute(1, 2, 0).numpy().copy()  # (H, W, 3): arr[h, w] is a view
            for i, hh in enumerate(rows.tolist()):
                for j, ww in enumerate(cols.tolist()):
                    dx, dy = int(moves[b, i, j, 0]), int(moves[b, i, j, 1])
                    hp, wp = hh + dy, ww + dx
                    arr[hh, ww], arr[hp, wp] = arr[hp, wp], arr[hh, ww]  # the original statement
            assert np.array_equal(out[b].permute(1, 2, 0).numpy(), arr)


def _motion_blur_loop(img: torch.Tensor, taps: tuple[float, ...], angle: float) -> torch.Tensor:
    """ImageMagick MotionBlurImage by loops: offsets ceil(i cos a - 0.5), ceil(i sin a - 0.5), edge pixels."""
    c, h, w = img.shape
    out = torch.zeros_like(img)
    rad = math.radians(angle)
    offsets = [(math.ceil(i * math.cos(rad) - 0.5), math.ceil(i * math.sin(rad) - 0.5)) for i in range(len(taps))]
    for y in range(h):
        for x in range(w):
            for weight, (ox, oy) in zip(taps, offsets):
                out[:, y, x] += weight * img[:, min(max(y + oy, 0), h - 1), min(max(x + ox, 0), w - 1)]
    return out


def test_motion_blur_against_loop_both_paths():
    x = torch.rand(3, 2, 9, 12, generator=seeded(6), dtype=torch.float64)
    taps = motion_blur_taps(4, 2.0)
    assert len(taps) == 9 and taps[0] == max(taps) and sum(taps) == pytest.approx(1.0)
    angles = torch.tensor([-45.0, 12.5, 200.0], dtype=torch.float64)
    for use_fft in (False, True):
        out = apply_motion_blur(x, taps, angles, use_fft=use_fft)
        for b in range(3):
            assert torch.allclose(out[b], _motion_blur_loop(x[b], taps, float(angles[b])), atol=1e-10)


def test_elastic_samplers_against_map_coordinates():
    ndimage = pytest.importorskip("scipy.ndimage")
    img = torch.rand(1, 1, 9, 11, generator=seeded(7), dtype=torch.float64)
    rows = torch.rand(1, 9, 11, generator=seeded(8), dtype=torch.float64) * 16 - 3
    cols = torch.rand(1, 9, 11, generator=seeded(9), dtype=torch.float64) * 18 - 3
    for reflect_101, mode in ((False, "reflect"), (True, "mirror")):
        ref = ndimage.map_coordinates(img[0, 0].numpy(), [rows[0].numpy(), cols[0].numpy()], order=1, mode=mode)
        assert np.abs(_sample(img, rows, cols, reflect_101=reflect_101)[0, 0].numpy() - ref).max() < 1e-10


# ---------------------------------------------------------------------------------------------
# weather


def test_plasma_fractal_range_and_smoothness():
    maps = {d: plasma_fractal(4, 64, d, seeded(1), dtype=torch.float64) for d in (1.5, 3.0)}
    for m in maps.values():
        assert m.shape == (4, 64, 64)
        assert torch.allclose(m.flatten(1).min(1).values, torch.zeros(4, dtype=torch.float64))
        assert torch.allclose(m.flatten(1).max(1).values, torch.ones(4, dtype=torch.float64))
    roughness = {d: float((m[:, :, 1:] - m[:, :, :-1]).abs().mean()) for d, m in maps.items()}
    assert roughness[3.0] < roughness[1.5]


def test_fog_formula():
    images = random_images(2, 3, 20, 24, seed=11)
    strength, decay = 0.75, 2.5
    plasma = plasma_fractal(2, 32, decay, seeded(3))[:, None, :20, :24]
    peak = images.flatten(1).max(1).values.view(2, 1, 1, 1)
    expected = on_grid(((images + strength * plasma) * peak / (peak + strength)).clamp(0, 1))
    assert torch.allclose(fog(images, strength, decay, seeded(3)), expected, atol=1e-6)


def test_frost_is_the_documented_blend_of_a_synthetic_texture():
    texture = frost_texture(3, 40, 48, 3, seeded(4), torch.empty(0))
    assert texture.shape == (3, 3, 40, 48) and 0 <= float(texture.min()) and float(texture.max()) <= 1
    luma = (texture * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1)
    assert float(luma.mean()) == pytest.approx(FROST_GREY_MEAN, abs=0.01)
    assert texture.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0.572, 0.656, 0.702], abs=0.01)
    grey = frost_texture(3, 40, 48, 1, seeded(4), torch.empty(0))
    assert float(grey.mean()) == pytest.approx(FROST_GREY_MEAN, abs=0.01)
    assert float(grey.std(dim=(-2, -1)).mean()) == pytest.approx(FROST_GREY_STD, abs=0.01)
    images = random_images(3, 3, 40, 48, seed=12)
    expected = on_grid((0.85 * images + 0.4 * frost_texture(3, 40, 48, 3, seeded(5), images)).clamp(0, 1))
    assert torch.allclose(frost(images, 0.85, 0.4, seeded(5)), expected, atol=1e-6)


def test_snow_whitens_and_adds_flakes():
    images = smooth_images(32, count=3)
    out = corrupt(images, "snow", 5, generator=seeded(2))
    assert float(out.mean()) > float(images.mean())
    assert float((out == 1).float().mean()) > float((images == 1).float().mean())


# ---------------------------------------------------------------------------------------------
# wrong inputs


def test_wrong_inputs_raise_clear_errors():
    images = random_images(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"4-D \(B, C, H, W\).*\(3, 8, 8\)"):
        corrupt(images[0], "fog", 1)
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels.*C=2"):
        corrupt(torch.rand(1, 2, 8, 8), "fog", 1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*got values in"):
        corrupt(images * 2, "fog", 1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        corrupt(images - 0.5, "contrast", 1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        corrupt(torch.full((1, 3, 4, 4), float("nan")), "contrast", 1)
    with pytest.raises(ValueError, match="floating"):
        corrupt(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "contrast", 1)
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match=f"severity must be an integer in 1..5, got {bad!r}"):
            corrupt(images, "fog", bad)
    with pytest.raises(ValueError, match="unknown corruption 'speckle_noise'.*gaussian_noise, shot_noise"):
        corrupt(images, "speckle_noise", 1)
    with pytest.raises(ValueError, match="table must be one of"):
        corrupt(images, "fog", 1, table="tiny")
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        corrupt(images, "fog", 1, generator=0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gaussian_noise(images, -0.1)
    with pytest.raises(ValueError, match="quality must be an integer in \\[1, 100\\]"):
        jpeg_compression(images, 101)
    with pytest.raises(ValueError, match="factor must be > 0"):
        pixelate(images, 0.0)
    with pytest.raises(ValueError, match="zoom_factors must be a non-empty sequence"):
        zoom_blur(images, ())
    with pytest.raises(ValueError, match="radius must be >= 0"):
        defocus_blur(images, -1, 0.1)


# ---------------------------------------------------------------------------------------------
# device


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_cuda_contract_and_agreement_with_cpu(name):
    cpu = smooth_images(32, count=4)
    gpu = cpu.cuda()
    for severity in SEVERITIES:
        g = torch.Generator(device="cuda").manual_seed(3)
        out = corrupt(gpu, name, severity, generator=g)
        assert out.device == gpu.device and out.shape == gpu.shape and torch.equal(out, on_grid(out))
        again = corrupt(gpu, name, severity, generator=torch.Generator(device="cuda").manual_seed(3))
        assert torch.equal(out, again)
        if name not in RANDOM_CORRUPTIONS:
            assert (out.cpu() - corrupt(cpu, name, severity)).abs().max() <= STEP + 1e-6
    with pytest.raises(ValueError, match="generator must live on the images' device"):
        corrupt(gpu, "gaussian_noise", 1, generator=seeded(0))
