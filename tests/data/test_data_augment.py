"""Batched augmentation: geometry, distribution against torchvision, views and replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from kdlab.data import BatchAugment, DataError, build_data
from kdlab.data.transforms import train_transform

IDENTITY = dict(mean=[0.0] * 3, std=[1 / 255] * 3)  # normalisation that leaves the uint8 values


def _as_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().to(torch.uint8)


def _coded_image(size: int = 32) -> np.ndarray:
    """Channel 0 = row + 1, channel 1 = column + 1: every pixel tells where it came from."""
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([rows + 1, cols + 1, np.zeros_like(rows)]).astype(np.uint8)


def _infer_crop_flip(out: torch.Tensor, padding: int = 4, size: int = 32) -> tuple[int, int, bool]:
    """(dy, dx, flipped) of a torchvision-style crop-then-flip, read off the coded image's centre."""
    c = size // 2
    row, col, right = int(out[0, c, c]) - 1, int(out[1, c, c]) - 1, int(out[1, c, c + 1]) - 1
    flipped = right < col
    dy = row - (c - padding)
    dx = col - (c - 1 - padding) if flipped else col - (c - padding)
    return dy, dx, flipped


def _chi_square_uniform(values: list[int], cells: int) -> float:
    counts = np.bincount(values, minlength=cells)
    expected = len(values) / cells
    return float(((counts - expected) ** 2 / expected).sum())


def test_crop_and_flip_follow_the_padded_image_exactly():
    aug = BatchAugment(size=6, crop=True, flip=True, padding=2, **IDENTITY)
    images = torch.randint(0, 256, (40, 3, 6, 6), dtype=torch.uint8)
    params = aug.sample_params(torch.Generator().manual_seed(0), 40)
    out = _as_uint8(aug.apply(images, params))
    padded = F.pad(images, (2, 2, 2, 2))
    for i in range(40):
        source = padded[i].flip(-1) if params["flip"][i] else padded[i]
        dy, dx = int(params["dy"][i]), int(params["dx"][i])
        assert torch.equal(out[i], source[:, dy : dy + 6, dx : dx + 6])


def test_crop_offsets_and_flips_match_torchvision_distribution():
    n, padding = 4050, 4
    coded = _coded_image()
    aug = BatchAugment(size=32, crop=True, flip=True, padding=padding, **IDENTITY)
    fast_out = _as_uint8(aug.apply(torch.from_numpy(coded)[None].expand(n, -1, -1, -1).contiguous(),
                                   aug.sample_params(torch.Generator().manual_seed(1), n)))
    reference = T.Compose([T.RandomCrop(32, padding=padding), T.RandomHorizontalFlip(), T.PILToTensor()])
    pil = Image.fromarray(coded.transpose(1, 2, 0))
    torch.manual_seed(2)
    ref_out = [reference(pil) for _ in range(n)]
    for outputs in (list(fast_out), ref_out):
        inferred = [_infer_crop_flip(o) for o in outputs]
        cells = [dy * 9 + dx for dy, dx, _ in inferred]
        assert min(cells) == 0 and max(cells) == 80
        # 80 degrees of freedom: mean 80, sd 12.6; 135 is p < 1e-5.
        assert _chi_square_uniform(cells, 81) < 135
        flips = sum(f for _, _, f in inferred)
        assert abs(flips / n - 0.5) < 4 * 0.5 / np.sqrt(n)


def test_padding_value_matches_torchvision_normalisation():
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    aug = BatchAugment(size=8, crop=True, padding=4, mean=mean, std=std)
    image = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    params = {"flip": torch.tensor([False]), "rot": torch.tensor([0]), "dy": torch.tensor([0]), "dx": torch.tensor([0])}
    out = aug.apply(image, params)
    reference = T.Normalize(mean, std)(T.functional.pad(image[0].float() / 255, 4)[:, :8, :8])
    assert torch.allclose(out[0], reference, atol=1e-5)


def test_rotate4_views_are_rotations_of_view_zero_without_padding():
    aug = BatchAugment(size=7, crop=True, flip=True, padding=0, views="rotate4", **IDENTITY)
    images = torch.randint(0, 256, (6, 3, 7, 7), dtype=torch.uint8)
    params = aug.sample_params(torch.Generator().manual_seed(3), 6)
    out = aug.apply(images, params)
    assert out.shape == (6, 4, 3, 7, 7)
    assert params["flip"].shape == (6, 4) and bool((params["flip"] == params["flip"][:, :1]).all())
    for k in range(4):
        assert torch.equal(out[:, k], torch.rot90(out[:, 0], k, dims=(-2, -1)))
    flipped = torch.where(params["flip"][:, 0, None, None, None], images.flip(-1), images)
    assert torch.equal(_as_uint8(out[:, 0]), flipped)


def test_rotate4_views_crop_independently():
    aug = BatchAugment(size=8, crop=True, flip=True, padding=2, views="rotate4", **IDENTITY)
    params = aug.sample_params(torch.Generator().manual_seed(0), 200)
    assert (params["dy"][:, 0] != params["dy"][:, 1]).any()


@pytest.mark.parametrize("pipeline", ["fast", "standard"])
def test_rotate4_through_build_data(make_cfg, pipeline):
    cfg = make_cfg(name="synthetic", synthetic_train=16, synthetic_size=8, batch_size=8, views="rotate4",
                   crop_padding=0, pipeline=pipeline)
    batch = next(build_data(cfg, seed=0).train.epoch(0))
    assert batch["image"].shape == (8, 4, 3, 8, 8)
    for k in range(4):
        assert torch.equal(batch["image"][:, k], torch.rot90(batch["image"][:, 0], k, dims=(-2, -1)))


def test_standard_rotate4_rotation_direction_matches_torch():
    transform = train_transform(augment="none", size=5, padding=0, mean=[0.0] * 3, std=[1.0] * 3, views="rotate4")
    pixels = np.random.default_rng(0).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    views = transform(Image.fromarray(pixels))
    assert torch.allclose(views[1], torch.rot90(views[0], 1, dims=(-2, -1)))


@pytest.mark.parametrize("pipeline", ["fast", "standard"])
def test_multi_views_are_independent_augmentations(make_cfg, pipeline):
    cfg = make_cfg(name="synthetic", synthetic_train=16, batch_size=8, views="multi", num_views=3, pipeline=pipeline)
    images = next(build_data(cfg, seed=0).train.epoch(0))["image"]
    assert images.shape == (8, 3, 3, 32, 32)
    assert not torch.equal(images[:, 0], images[:, 1])


def test_batch_aug_params_replay_the_exact_images(make_cfg):
    bundle = build_data(make_cfg(name="synthetic", synthetic_train=32, batch_size=8, views="rotate4"), seed=5)
    stream = bundle.train
    for step, batch in enumerate(stream.epoch(2)):
        replayed = stream.augment.apply(stream.images[batch["index"]], batch["aug"])
        assert torch.equal(replayed, batch["image"])
        assert all(torch.equal(v, stream.params_at(2, step)[k]) for k, v in batch["aug"].items())


def test_channels_last_output(make_cfg):
    bundle = build_data(make_cfg(name="synthetic", synthetic_train=16, batch_size=8), seed=0, channels_last=True)
    image = next(bundle.train.epoch(0))["image"]
    assert image.is_contiguous(memory_format=torch.channels_last)
    assert next(iter(bundle.eval))["image"].is_contiguous(memory_format=torch.channels_last)
    standard = build_data(make_cfg(name="synthetic", synthetic_train=16, batch_size=8, pipeline="standard"),
                          seed=0, channels_last=True)
    assert next(standard.train.epoch(0))["image"].is_contiguous(memory_format=torch.channels_last)


def test_no_augmentation_equals_eval_images(make_cfg):
    bundle = build_data(make_cfg(name="synthetic", synthetic_train=16, batch_size=8, augment="none"), seed=0)
    eval_images = torch.cat([b["image"] for b in bundle.train_eval])
    batch = next(bundle.train.epoch(0))
    assert torch.equal(batch["image"], eval_images[batch["index"]])


def test_apply_rejects_wrong_inputs():
    aug = BatchAugment(size=8, crop=True, padding=1, **IDENTITY)
    params = aug.sample_params(torch.Generator().manual_seed(0), 2)
    with pytest.raises(DataError, match="uint8"):
        aug.apply(torch.zeros(2, 3, 8, 8), params)
    with pytest.raises(DataError, match="for 2 images, the batch has 3"):
        aug.apply(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), params)
