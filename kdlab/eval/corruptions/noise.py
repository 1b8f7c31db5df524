"""Noise corruptions of Hendrycks & Dietterich (ICLR 2019): gaussian, shot and impulse noise.

Formulas as make_cifar_c.py / make_imagenet_c.py, with x in [0, 1], elementwise (every
channel of every pixel independently), then clipped to [0, 1] and quantised to 1/255:

* gaussian_noise: ``x + N(0, sigma^2)``.
* shot_noise: ``Poisson(x * photons) / photons`` (more photons: less noise).
* impulse_noise: ``skimage.util.random_noise(mode='s&p', amount)``: each value is hit with
  probability ``amount``; a hit becomes 1 (salt) or 0 (pepper) with probability 1/2 each.

Randomness comes only from ``generator`` (on the images' device; None -> seeded 0).
"""

from __future__ import annotations

import math

import torch

from kdlab.eval.corruptions._common import check_images, check_number, finish, resolve_generator, working


def gaussian_noise(images: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation ``sigma`` (neutral: 0). images: (B, C, H, W) in [0, 1]."""
    check_images(images)
    sigma = check_number("sigma", sigma, low=0.0)
    x = working(images)
    if sigma == 0:
        return finish(x, images)
    g = resolve_generator(generator, images.device)
    noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    return finish(x + sigma * noise, images)


def shot_noise(images: torch.Tensor, photons: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Poisson (shot) noise ``Poisson(x * photons) / photons``; ``photons = inf`` is the neutral (no noise)."""
    check_images(images)
    photons = check_number("photons", photons, low=0.0, low_open=True)
    x = working(images)
    if math.isinf(photons):
        return finish(x, images)
    g = resolve_generator(generator, images.device)
    return finish(torch.poisson(x * photons, generator=g) / photons, images)


def impulse_noise(images: torch.Tensor, amount: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Salt-and-pepper noise: each value becomes 0 or 1 (even odds) with probability ``amount`` (neutral: 0)."""
    check_images(images)
    amount = check_number("amount", amount, low=0.0, high=1.0)
    x = working(images)
    if amount == 0:
        return finish(x, images)
    g = resolve_generator(generator, images.device)
    hit = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype) < amount
    salt = torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype) < 0.5
    out = torch.where(hit, salt.to(x.dtype), x)
    return finish(out, images)
