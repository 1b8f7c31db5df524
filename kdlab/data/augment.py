"""Batched augmentation of uint8 images on the training device (the fast path).

Random crop with zero padding, horizontal flip and rotation by multiples of
90 degrees are folded into one per-pixel source index, so a whole batch (and
all its views) is augmented by a single ``gather``: no per-sample Python loop.

Sampling and applying are separate: :meth:`BatchAugment.sample_params` draws
the parameters from a given generator, :meth:`BatchAugment.apply` turns
(images, parameters) into the network input. A teacher-output cache can store
the parameters and replay exactly the image the teacher saw.

Geometry, per sample and view: flip the image (if drawn), rotate it by
``rot`` x 90 degrees counter-clockwise (``torch.rot90(x, rot, dims=(-2, -1))``),
zero-pad by ``padding`` and crop ``size`` x ``size`` at offset (``dy``, ``dx``),
each offset uniform in [0, 2 * padding] like torchvision's RandomCrop.

``weak_strong`` (MLKD's two views): view 0 is the normal crop/flip, view 1 an
independent crop/flip of the same image followed by RandAugment + Cutout
(:mod:`kdlab.data.randaugment`), as the official code's two transforms do.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from .errors import DataError
from .randaugment import STRONG_PARAM_KEYS, apply_strong, sample_strong_params

VIEW_MODES = ("single", "rotate4", "multi", "weak_strong")


@contextlib.contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run CPU batch ops single-threaded: on tensors this small, intra-op threads
    cost more in synchronisation than they save, and on a loaded machine each
    parallel op can wait a whole scheduler slice for a descheduled thread
    (measured: 0.4 ms vs 16 ms per batch of 64 at 32 px on 2 busy cores)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class BatchAugment:
    """Crop/flip/rotate + normalisation of uint8 (B, C, S, S) batches, optionally into several views.

    Parameter tensors have shape (B,) for ``views="single"`` (output
    (B, C, S, S)) and (B, V) otherwise (output (B, V, C, S, S)); keys are
    ``flip`` (bool), ``rot`` (0..3), ``dy`` and ``dx`` (crop offsets).
    ``rotate4`` gives V = 4: one flip per image shared by its views, view k
    rotated by k x 90 degrees, each view cropped independently. ``weak_strong``
    gives V = 2, each view cropped and flipped independently, view 1 then
    RandAugment + Cutout; its parameters add the (B, ...) keys of
    :func:`kdlab.data.randaugment.sample_strong_params`.
    """

    def __init__(
        self,
        *,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop: bool = False,
        flip: bool = False,
        padding: int = 0,
        views: str = "single",
        num_views: int = 1,
        channels_last: bool = False,
    ) -> None:
        if views not in VIEW_MODES:
            raise DataError(f"data.views={views!r} is not one of {VIEW_MODES}")
        if len(mean) != len(std):
            raise DataError(f"data.mean has {len(mean)} values but data.std has {len(std)}")
        if any(s <= 0 for s in std):
            raise DataError(f"data.std must be positive, got {list(std)}")
        if padding < 0:
            raise DataError(f"data.crop_padding must be >= 0, got {padding}")
        self.size = size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.crop = crop
        self.flip = flip
        self.padding = padding if crop else 0
        self.views = views
        self.num_views = {"single": 1, "rotate4": 4, "multi": num_views, "weak_strong": 2}[views]
        self.channels_last = channels_last

    # -- sampling -------------------------------------------------------
    def sample_params(self, generator: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        """Parameters for ``n`` images, drawn from ``generator`` only (CPU tensors)."""
        shape = (n,) if self.views == "single" else (n, self.num_views)
        flip_shape = (n,) if self.views == "rotate4" else shape
        if self.flip:
            flip = torch.rand(flip_shape, generator=generator) < 0.5
        else:
            flip = torch.zeros(flip_shape, dtype=torch.bool)
        if self.views == "rotate4":
            flip = flip[:, None].expand(shape).contiguous()
            rot = torch.arange(4, dtype=torch.long).expand(shape).contiguous()
        else:
            rot = torch.zeros(shape, dtype=torch.long)
        if self.crop and self.padding > 0:
            dy = torch.randint(0, 2 * self.padding + 1, shape, generator=generator)
            dx = torch.randint(0, 2 * self.padding + 1, shape, generator=generator)
        else:
            dy = torch.full(shape, self.padding, dtype=torch.long)
            dx = torch.full(shape, self.padding, dtype=torch.long)
        params = {"flip": flip, "rot": rot, "dy": dy, "dx": dx}
        if self.views == "weak_strong":
            params.update(sample_strong_params(generator, n, self.size))
        return params

    # -- applying -------------------------------------------------------
    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augmented, normalised float images: (B, C, S, S) or (B, V, C, S, S) by the parameters' shape."""
        with one_thread_on_cpu(images.device):
            return self._apply(images, params)

    def _apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_images(images)
        missing = {"flip", "rot", "dy", "dx"} - set(params)
        if missing:
            raise DataError(f"augmentation params lack {sorted(missing)}; got keys {sorted(params)}")
        batch, channels, size, _ = images.shape
        flip = params["flip"].to(images.device)
        single = flip.ndim == 1
        if flip.shape[0] != batch:
            raise DataError(f"augmentation params are for {flip.shape[0]} images, the batch has {batch}")
        flip, rot, dy, dx = (
            params[k].to(images.device).reshape(batch, -1) for k in ("flip", "rot", "dy", "dx")
        )
        views = flip.shape[1]
        pad = self.padding
        # Zero padding commutes with flips and rotations (it is symmetric), so
        # pad once and read every view out of the padded image.
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        padded_size = size + 2 * pad
        index = self._source_index(flip, rot.long(), dy.long(), dx.long(), size, padded_size)
        flat = padded.reshape(batch, channels, padded_size * padded_size)
        index = index.reshape(batch, 1, views * size * size).expand(batch, channels, -1)
        pixels = flat.gather(2, index).reshape(batch, channels, views, size, size).permute(0, 2, 1, 3, 4)
        if self.views == "weak_strong":
            pixels = self._strong_view(pixels, params)
        out = self._normalize(pixels)
        if single:
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            return out[:, 0].contiguous(memory_format=layout)
        return out.contiguous()

    def _strong_view(self, pixels: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2, C, S, S) uint8 crops with view 1 replaced by its RandAugment + Cutout."""
        missing = set(STRONG_PARAM_KEYS) - set(params)
        if missing or pixels.shape[1] != 2:
            raise DataError(
                f"data.views=weak_strong needs 2 views and the strong-view parameters {list(STRONG_PARAM_KEYS)}; "
                f"got {pixels.shape[1]} view(s) and keys {sorted(params)}"
            )
        try:
            strong = apply_strong(pixels[:, 1].contiguous(), {k: params[k] for k in STRONG_PARAM_KEYS})
        except ValueError as err:
            raise DataError(f"data.views=weak_strong: {err}") from None
        return torch.stack([pixels[:, 0], strong], dim=1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float, normalised (B, C, S, S) images without augmentation (the eval transform)."""
        self._check_images(images)
        with one_thread_on_cpu(images.device):
            out = self._normalize(images)
        if self.channels_last:
            return out.contiguous(memory_format=torch.channels_last)
        return out

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise DataError(
                f"BatchAugment expects uint8 (B, C, S, S) images, got {images.dtype} {tuple(images.shape)}"
            )
        if images.shape[1] != len(self.mean):
            raise DataError(
                f"images have {images.shape[1]} channels but mean/std have {len(self.mean)} values"
            )

    def _normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        channel_shape = [1] * pixels.ndim
        channel_shape[-3] = -1
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device).reshape(channel_shape)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device).reshape(channel_shape)
        # x / 255 then (x - mean) / std, as one multiply-add.
        return torch.addcmul(-mean / std, pixels.to(torch.float32), 1.0 / (255.0 * std))

    def _source_index(
        self, flip: torch.Tensor, rot: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, size: int, padded: int
    ) -> torch.Tensor:
        """For every output pixel (B, V, size, size), its linear index in the padded source image.

        Output pixel (i, j) reads the flipped-then-rotated padded image at
        (u, v) = (i + dy, j + dx). Undoing rot90 and the flip maps (u, v) to the
        source (a, b) affinely, with per-sample coefficients from a 4-entry
        table, so the whole index is offset + cu * i + cv * j.
        """
        last = padded - 1
        # Per rotation k: a = a0 + au*u + av*v and b = b0 + bu*u + bv*v
        # (the inverse of torch.rot90 counter-clockwise on dims (H, W)).
        table = torch.tensor(
            [
                [0, 1, 0, 0, 0, 1],
                [0, 0, 1, last, -1, 0],
                [last, -1, 0, last, 0, -1],
                [last, 0, -1, 0, 1, 0],
            ],
            dtype=torch.long,
            device=flip.device,
        )
        a0, au, av, b0, bu, bv = table[rot % 4].unbind(-1)
        # The flip happened before the rotation: X[a, last - b].
        sign = 1 - 2 * flip.long()
        b0 = torch.where(flip, last - b0, b0)
        bu, bv = bu * sign, bv * sign
        cu, cv = au * padded + bu, av * padded + bv
        offset = a0 * padded + b0 + cu * dy + cv * dx
        ramp = torch.arange(size, device=flip.device)
        index = offset[..., None, None] + cu[..., None, None] * ramp[:, None] + cv[..., None, None] * ramp[None, :]
        return index.reshape(flip.shape[0], -1)
