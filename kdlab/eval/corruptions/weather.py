"""Weather corruptions of Hendrycks & Dietterich (ICLR 2019): snow, frost and fog.

(B, C, H, W) float images in [0, 1]; spatial strengths in pixels of these images. Grey
(C = 1) images get the same layers, blended in grey.

* snow: a flake layer ``N(flake_mean, flake_std^2)`` per pixel, zoomed about the centre by
  ``flake_zoom`` (:func:`clipped_zoom`), values below ``flake_threshold`` set to 0, clipped to
  [0, 1], motion-blurred (ImageMagick-style, ``blur_radius``, ``blur_sigma``, angle ~
  U(-135, -45) degrees: near-vertical streaks). The image is first whitened,
  ``w x + (1 - w) max(x, 1.5 gray(x) + 0.5)`` with ``w = image_weight`` and
  gray = 0.299 R + 0.587 G + 0.114 B, then the layer and its 180-degree rotation are added.
  As the original except its uint8/PNG round trip of the layer for Wand.
* frost: ``image_weight * x + frost_weight * texture``. **Approximation**: the original blends
  a random crop of one of its frost photographs (frost1..5 of the release), which we do not
  ship. :func:`frost_texture` synthesises a procedural stand-in: crossing ice needles
  (random seeds drawn out into lines, orientation locally coherent, with side branches at
  60 degrees) over a plasma-fractal background, standardised per image to the photographs'
  brightness and spread (luma mean 0.636, std 0.11) and given their blue-white tint (mean
  colour 0.572, 0.656, 0.702: offsets -0.064, +0.020, +0.066 from the luma). Needle length
  and density scale with the image size. It has roughly the photographs' mean colour,
  contrast and edge density, not their look in detail: numbers obtained with this frost
  are *not comparable* to published CIFAR-10-C / ImageNet-C frost results.
* fog: ``x + strength * plasma`` then rescaled by ``max(x) / (max(x) + strength)`` (max over
  the whole clean image), plasma = :func:`plasma_fractal` with ``wibbledecay``, generated at
  the smallest power-of-two size >= max(H, W) and cropped top-left (32 -> 32 and 224 -> 256
  as the originals' fixed 32 / 256 maps).
"""

from __future__ import annotations

import math

import torch

from kdlab.eval.corruptions._common import (
    check_images,
    check_number,
    finish,
    gray,
    next_power_of_two,
    resolve_generator,
    uniform,
    working,
)
from kdlab.eval.corruptions._kernels import apply_motion_blur, clipped_zoom, gaussian_blur, motion_blur_taps
from kdlab.eval.corruptions.fractal import plasma_fractal

# Statistics of the release's frost photographs frost1..frost5 (the ones its code draws):
# luma of their mean colour (R, G, B = 0.572, 0.656, 0.702 averaged over the five), a typical
# per-image std, and each channel's mean minus that luma (the offsets have ~zero luma).
FROST_GREY_MEAN = 0.636
FROST_GREY_STD = 0.11
FROST_RGB_OFFSETS = (-0.064, 0.020, 0.066)


def snow(images: torch.Tensor, flake_mean: float, flake_std: float, flake_zoom: float, flake_threshold: float,
         blur_radius: float, blur_sigma: float, image_weight: float,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Snow: blurred flake layer added twice (as is and rotated 180 degrees) to a whitened image.

    Neutral: flake_mean 0, flake_std 0 (empty layer) and image_weight 1, e.g.
    ``(0, 0, 1, 1, 0, 0, 1)``.
    """
    check_images(images)
    flake_mean = check_number("flake_mean", flake_mean)
    flake_std = check_number("flake_std", flake_std, low=0.0)
    flake_zoom = check_number("flake_zoom", flake_zoom, low=1.0)
    flake_threshold = check_number("flake_threshold", flake_threshold)
    blur_radius = check_number("blur_radius", blur_radius, low=0.0)
    blur_sigma = check_number("blur_sigma", blur_sigma, low=0.0)
    image_weight = check_number("image_weight", image_weight, low=0.0, high=1.0)
    x = working(images)
    b, _, h, w = x.shape
    g = resolve_generator(generator, images.device)

    flakes = flake_mean + flake_std * torch.randn((b, 1, h, w), generator=g, device=x.device, dtype=x.dtype)
    flakes = clipped_zoom(flakes, flake_zoom)
    flakes = torch.where(flakes < flake_threshold, torch.zeros_like(flakes), flakes).clamp(0.0, 1.0)
    angles = uniform((b,), -135.0, -45.0, g, x)
    flakes = apply_motion_blur(flakes, motion_blur_taps(blur_radius, blur_sigma), angles)

    whitened = image_weight * x + (1.0 - image_weight) * torch.maximum(x, gray(x) * 1.5 + 0.5)
    return finish(whitened + flakes + torch.flip(flakes, dims=(-2, -1)), images)


def _draw_lines(canvas: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, angles: torch.Tensor,
                values: torch.Tensor, length: int, height: int, width: int) -> None:
    """Max-splat lines into ``canvas`` (B, H*W + 1; the last slot swallows off-image points).

    Line n of image b starts at (rows, cols)[b, n] and covers the pixels
    round(start + t (sin, cos) angle) for t = 0 .. length-1, each set to at least values[b, n].
    A max is order-independent, so the result is deterministic on every device.
    """
    b, n = rows.shape
    t = torch.arange(length, device=canvas.device, dtype=values.dtype).view(1, 1, length)
    r = torch.round(rows.unsqueeze(-1) + t * torch.sin(angles).unsqueeze(-1)).long()
    c = torch.round(cols.unsqueeze(-1) + t * torch.cos(angles).unsqueeze(-1)).long()
    inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    index = torch.where(inside, r * width + c, torch.full_like(r, height * width)).view(b, n * length)
    canvas.scatter_reduce_(1, index, values.unsqueeze(-1).expand(b, n, length).reshape(b, n * length), "amax")


# Orientation families of the synthetic frost: directions base + k pi / 6.
_FROST_FAMILIES = 6


def frost_texture(batch: int, height: int, width: int, channels: int, generator: torch.Generator,
                  like: torch.Tensor) -> torch.Tensor:
    """(batch, channels, height, width) synthetic frost in [0, 1] (see module doc; not the release's photos).

    Ice needles in 6 orientation families (base + k 30 degrees, base random per image); the
    family at a pixel follows a smooth plasma field, so needles are locally parallel like
    frost feathers. Main needles: 4 H W / L^2 seeds drawn out 2 L px along their family
    (L = max(2, 0.12 min(H, W))); side branches: 4 H W / (L/3)^2 seeds drawn L / 3 px at
    +-60 degrees to it. Brightness U(0.3, 1) per needle (branches 0.8 of that), softened by a
    Gaussian of max(0.6, 0.003 min(H, W)) px, mixed 0.65 / 0.35 with a plasma-fractal
    background, standardised per image to the photographs' grey mean / std, tinted for RGB.
    """
    size = min(height, width)
    k = _FROST_FAMILIES
    dev, dt = like.device, like.dtype
    mapsize = next_power_of_two(max(height, width))
    main_len = max(2, round(0.12 * size))
    branch_len = max(2, round(main_len / 3))

    orientation = plasma_fractal(batch, mapsize, 2.5, generator, device=dev, dtype=dt)[:, :height, :width]
    family = (torch.floor(orientation * 1.5 * k).long() % k).reshape(batch, -1)
    base = uniform((batch, 1), 0.0, math.pi, generator, like)

    canvas = torch.zeros(batch, height * width + 1, device=dev, dtype=dt)
    for length, count, shade, turn in ((2 * main_len, 4.0 / main_len**2, 1.0, 0),
                                       (branch_len, 4.0 / branch_len**2, 0.8, 2)):
        n = max(1, round(count * height * width))
        rows = torch.randint(0, height, (batch, n), generator=generator, device=dev)
        cols = torch.randint(0, width, (batch, n), generator=generator, device=dev)
        local = family.gather(1, rows * width + cols)
        if turn:
            sign = torch.randint(0, 2, (batch, n), generator=generator, device=dev) * 2 - 1
            local = local + turn * sign
        angles = base + local.to(dt) * (math.pi / k)
        values = shade * uniform((batch, n), 0.3, 1.0, generator, like)
        _draw_lines(canvas, rows.to(dt), cols.to(dt), angles, values, length, height, width)
    needles = canvas[:, : height * width].view(batch, 1, height, width)
    needles = gaussian_blur(needles, max(0.6, 0.003 * size))

    clouds = plasma_fractal(batch, mapsize, 1.8, generator, device=dev, dtype=dt)[:, None, :height, :width]
    raw = 0.65 * needles + 0.35 * clouds
    mean = raw.mean(dim=(-2, -1), keepdim=True)
    std = raw.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6) if height * width > 1 else torch.ones_like(mean)
    grey = (raw - mean) / std * FROST_GREY_STD + FROST_GREY_MEAN
    if channels == 3:
        grey = grey + torch.tensor(FROST_RGB_OFFSETS, device=dev, dtype=dt).view(1, 3, 1, 1)
    return grey.clamp(0.0, 1.0)


def frost(images: torch.Tensor, image_weight: float, frost_weight: float,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """``image_weight * x + frost_weight * synthetic_frost`` (approximation, see module doc). Neutral: (1, 0)."""
    check_images(images)
    image_weight = check_number("image_weight", image_weight, low=0.0)
    frost_weight = check_number("frost_weight", frost_weight, low=0.0)
    x = working(images)
    if frost_weight == 0:
        return finish(image_weight * x, images)
    b, c, h, w = x.shape
    g = resolve_generator(generator, images.device)
    return finish(image_weight * x + frost_weight * frost_texture(b, h, w, c, g, x), images)


def fog(images: torch.Tensor, strength: float, wibbledecay: float,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """``(x + strength * plasma) * max(x) / (max(x) + strength)``; larger wibbledecay: smoother fog.

    Neutral: strength 0.
    """
    check_images(images)
    strength = check_number("strength", strength, low=0.0)
    wibbledecay = check_number("wibbledecay", wibbledecay, low=0.0, low_open=True)
    x = working(images)
    if strength == 0:
        return finish(x, images)
    b, _, h, w = x.shape
    g = resolve_generator(generator, images.device)
    mapsize = next_power_of_two(max(h, w))
    plasma = plasma_fractal(b, mapsize, wibbledecay, g, device=x.device, dtype=x.dtype)[:, None, :h, :w]
    max_val = x.flatten(1).max(dim=1).values.view(b, 1, 1, 1)
    return finish((x + strength * plasma) * max_val / (max_val + strength), images)
