"""torchvision transforms of the standard path (PIL image in, normalised tensor out).

Randomness comes from torch's global RNG, which the standard pipeline seeds
per sample (inside a forked RNG state) before calling these, so the result
depends on the sample's seed only (MLKD's strong view draws its RandAugment
parameters from it too; no Python or numpy RNG is used).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from .errors import DataError
from .imageio import fit_square
from .randaugment import apply_strong, sample_strong_params

LARGE_IMAGE = 64  # above this, eval uses resize + centre crop, and "auto" picks the standard path
FAST_AUGMENTS = ("none", "crop", "flip", "crop_flip")
STANDARD_ONLY_AUGMENTS = ("random_resized_crop", "mocov2")

_ROTATIONS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


class FitSquare:
    """Resize the shorter side to ``size`` and centre-crop, unless the image already is size x size."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        return fit_square(image, self.size)

    def __repr__(self) -> str:
        return f"FitSquare({self.size})"


class Rotate4Views:
    """SSKD's views: one random flip, then the image rotated by 0/90/180/270 degrees, each view cropped on its own.

    Rotation is counter-clockwise, matching ``torch.rot90(x, k, dims=(-2, -1))``;
    returns a (4, C, H, W) tensor whose view 0 is unrotated.
    """

    def __init__(self, size: int, padding: int, crop: bool, flip: bool, to_tensor: Callable) -> None:
        self.flip = T.RandomHorizontalFlip() if flip else None
        self.crop = T.RandomCrop(size, padding=padding) if crop else None
        self.fit = FitSquare(size)
        self.to_tensor = to_tensor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self.fit(image)
        if self.flip is not None:
            image = self.flip(image)
        views = []
        for rotation in _ROTATIONS:
            view = image if rotation is None else image.transpose(rotation)
            if self.crop is not None:
                view = self.crop(view)
            views.append(self.to_tensor(view))
        return torch.stack(views)


class MultiViews:
    """``num_views`` independent draws of a transform, stacked into (V, C, H, W)."""

    def __init__(self, transform: Callable, num_views: int) -> None:
        self.transform = transform
        self.num_views = num_views

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.num_views)])


class WeakStrongViews:
    """MLKD's views: the image augmented twice (independent draws of ``augment``), the second draw then
    RandAugment + Cutout (:mod:`kdlab.data.randaugment`); returns (2, C, H, W), view 0 the weak one."""

    def __init__(self, augment: Callable[[Image.Image], Image.Image], to_tensor: Callable) -> None:
        self.augment = augment
        self.to_tensor = to_tensor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        weak = self.to_tensor(self.augment(image))
        crop = np.asarray(self.augment(image), dtype=np.uint8)
        pixels = torch.from_numpy(crop.copy()).reshape(crop.shape[0], crop.shape[1], -1).permute(2, 0, 1)[None]
        # the sample's seed has seeded torch's global generator (see kdlab.data.standard): its parameters' source
        params = sample_strong_params(None, 1, pixels.shape[-1])
        try:
            strong = apply_strong(pixels.contiguous(), params)[0].permute(1, 2, 0).numpy()
        except ValueError as err:
            raise DataError(f"data.views=weak_strong: {err}") from None
        strong_image = Image.fromarray(strong[:, :, 0] if strong.shape[-1] == 1 else strong)
        return torch.stack([weak, self.to_tensor(strong_image)])


def _to_tensor(mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(list(mean), list(std))])


def augment_transform(augment: str, size: int, padding: int) -> list:
    """The PIL-level augmentation of one view for ``data.augment`` (no tensor conversion)."""
    if augment in FAST_AUGMENTS:
        steps: list = [FitSquare(size)]
        if augment in ("crop", "crop_flip"):
            steps.append(T.RandomCrop(size, padding=padding))
        if augment in ("flip", "crop_flip"):
            steps.append(T.RandomHorizontalFlip())
        return steps
    if augment == "random_resized_crop":
        return [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    if augment == "mocov2":
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
        return [
            T.RandomResizedCrop(size, scale=(0.2, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
            T.RandomHorizontalFlip(),
        ]
    raise DataError(f"data.augment={augment!r} is not one of {FAST_AUGMENTS + STANDARD_ONLY_AUGMENTS}")


def train_transform(
    *,
    augment: str,
    size: int,
    padding: int,
    mean: Sequence[float],
    std: Sequence[float],
    views: str = "single",
    num_views: int = 1,
) -> Callable[[Image.Image], torch.Tensor]:
    """Training transform: (C, H, W) for single views, (V, C, H, W) for ``rotate4`` / ``multi`` / ``weak_strong``."""
    to_tensor = _to_tensor(mean, std)
    if views == "rotate4":
        if augment not in FAST_AUGMENTS:
            raise DataError(
                "data.views=rotate4 crops and flips itself; "
                f"data.augment must be one of {FAST_AUGMENTS}, got {augment!r}"
            )
        return Rotate4Views(
            size,
            padding,
            crop=augment in ("crop", "crop_flip"),
            flip=augment in ("flip", "crop_flip"),
            to_tensor=to_tensor,
        )
    if views == "weak_strong":
        return WeakStrongViews(T.Compose(augment_transform(augment, size, padding)), to_tensor)
    single = T.Compose(augment_transform(augment, size, padding) + [to_tensor])
    if views == "multi":
        return MultiViews(single, num_views)
    if views != "single":
        raise DataError(f"data.views={views!r} is not one of ('single', 'rotate4', 'multi', 'weak_strong')")
    return single


def eval_transform(*, size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Evaluation transform: to size (resize to size/0.875 + centre crop for large images) and normalise."""
    steps: list = []
    if size > LARGE_IMAGE:
        steps += [T.Resize(int(size / 0.875)), T.CenterCrop(size)]
    else:
        steps.append(FitSquare(size))
    return T.Compose(steps + [T.ToTensor(), T.Normalize(list(mean), list(std))])
