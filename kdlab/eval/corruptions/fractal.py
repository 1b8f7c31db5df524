"""Plasma fractal (diamond-square heightmap), the texture behind the fog corruption.

As ``plasma_fractal`` in make_cifar_c.py / make_imagenet_c.py (itself after FLHerne/mapgen):
start from a zero (M x M) map (M a power of two) with wrap-around neighbours; at each level
with step s, the centre of every s-square gets the mean of its 4 corners and every edge
midpoint the mean of its 4 diamond neighbours, each plus ``wibble * U(-wibble, wibble)``
(the noise amplitude is wibble squared, as in the original); wibble starts at 100 and is
divided by ``wibbledecay`` per level (larger decay: smoother map). The map is finally
rescaled to [0, 1] by its own min and max. Vectorised over a batch of independent maps.
"""

from __future__ import annotations

import torch

from kdlab.eval.corruptions._common import uniform


def plasma_fractal(batch: int, mapsize: int, wibbledecay: float, generator: torch.Generator,
                   *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, mapsize, mapsize) diamond-square maps in [0, 1]; mapsize must be a power of two >= 2."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    if not wibbledecay > 0:
        raise ValueError(f"wibbledecay must be > 0, got {wibbledecay!r}")
    like = torch.empty(0, device=device, dtype=dtype)
    heights = torch.zeros(batch, mapsize, mapsize, device=device, dtype=dtype)
    wibble = 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * uniform(tuple(total.shape), -wibble, wibble, generator, like)

    step = mapsize
    while step >= 2:
        half = step // 2
        corners = heights[:, 0::step, 0::step]
        squares = corners + torch.roll(corners, -1, dims=1)
        squares = squares + torch.roll(squares, -1, dims=2)
        heights[:, half::step, half::step] = wibbled_mean(squares)

        centres = heights[:, half::step, half::step]
        corners = heights[:, 0::step, 0::step]
        left_top = centres + torch.roll(centres, 1, dims=1) + corners + torch.roll(corners, -1, dims=2)
        heights[:, 0::step, half::step] = wibbled_mean(left_top)
        top_left = centres + torch.roll(centres, 1, dims=2) + corners + torch.roll(corners, -1, dims=1)
        heights[:, half::step, 0::step] = wibbled_mean(top_left)

        step //= 2
        wibble /= wibbledecay

    flat = heights.flatten(1)
    low = flat.min(dim=1).values.view(batch, 1, 1)
    heights = heights - low
    high = heights.flatten(1).max(dim=1).values.view(batch, 1, 1)
    return heights / high.clamp_min(torch.finfo(dtype).tiny)
