"""Seeded positive/negative sampling of anchors and RoIs.

torchvision's samplers draw from the global RNG, image after image of a batch, so
which anchors and RoIs a step trains on depends on the order of images in the
process. Here each image's draws come from its own generator, seeded from
(run seed, epoch, image index): the same image in the same epoch samples the same
boxes whether it is trained in a batch of 8 or on one rank of 2 with 4, and a
resumed run replays them exactly.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import torch
from torch import Tensor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler



def image_seed(*parts: object) -> int:
    """A 63-bit seed from (run seed, epoch, image index, ...), stable across processes and platforms."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class SeededBalancedSampler(BalancedPositiveNegativeSampler):
    """torchvision's balanced sampler (same counts) with a generator per image.

    ``set_images(seeds)`` before a forward fixes the generators of the next call;
    without it (or after ``clear()``) the sampler behaves like torchvision's own.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, salt: str) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.salt = salt
        self.image_seeds: Optional[list[int]] = None

    @classmethod
    def replacing(cls, sampler: BalancedPositiveNegativeSampler, salt: str) -> "SeededBalancedSampler":
        return cls(sampler.batch_size_per_image, sampler.positive_fraction, salt)

    def set_images(self, seeds: Sequence[int]) -> None:
        self.image_seeds = [int(s) for s in seeds]

    def clear(self) -> None:
        self.image_seeds = None

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if self.image_seeds is None:
            return super().__call__(matched_idxs)
        if len(self.image_seeds) != len(matched_idxs):
            raise ValueError(f"sampler seeded for {len(self.image_seeds)} images, called with {len(matched_idxs)}")
        positives, negatives = [], []
        for seed, matched in zip(self.image_seeds, matched_idxs):
            generator = torch.Generator().manual_seed(image_seed(self.salt, seed))
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pick_pos = torch.randperm(positive.numel(), generator=generator)[:num_pos].to(matched.device)
            pick_neg = torch.randperm(negative.numel(), generator=generator)[:num_neg].to(matched.device)
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[pick_pos]] = 1
            neg_mask[negative[pick_neg]] = 1
            positives.append(pos_mask)
            negatives.append(neg_mask)
        return positives, negatives


def install_seeded_samplers(detector: torch.nn.Module) -> tuple[SeededBalancedSampler, SeededBalancedSampler]:
    """Replace a Faster R-CNN's RPN and RoI samplers by seeded ones (idempotent); returns both."""
    rpn, roi = detector.rpn, detector.roi_heads
    if not isinstance(rpn.fg_bg_sampler, SeededBalancedSampler):
        rpn.fg_bg_sampler = SeededBalancedSampler.replacing(rpn.fg_bg_sampler, "rpn")
    if not isinstance(roi.fg_bg_sampler, SeededBalancedSampler):
        roi.fg_bg_sampler = SeededBalancedSampler.replacing(roi.fg_bg_sampler, "roi")
    return rpn.fg_bg_sampler, roi.fg_bg_sampler
