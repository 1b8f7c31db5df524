"""MLKD's two views (data.views=weak_strong): RandAugment + Cutout against PIL as the official code calls it,
the views on the fast and the standard path, and randomness drawn from the given generator only."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from kdlab.data import BatchAugment, DataError, build_data
from kdlab.data import randaugment as ra
from kdlab.data.standard import SeededTrainDataset
from kdlab.data.transforms import train_transform

IDENTITY = dict(mean=[0.0] * 3, std=[1 / 255] * 3)  # normalisation that leaves the uint8 values

#: the official code's ops (mdistiller/dataset/cifar100.py), each a PIL call with the op's value
PIL_OPS = {
    "auto_contrast": lambda im, v: ImageOps.autocontrast(im),
    "brightness": lambda im, v: ImageEnhance.Brightness(im).enhance(v),
    "color": lambda im, v: ImageEnhance.Color(im).enhance(v),
    "contrast": lambda im, v: ImageEnhance.Contrast(im).enhance(v),
    "equalize": lambda im, v: ImageOps.equalize(im),
    "identity": lambda im, v: im,
    "posterize": lambda im, v: ImageOps.posterize(im, max(1, int(v))),
    "rotate": lambda im, v: im.rotate(v),
    "sharpness": lambda im, v: ImageEnhance.Sharpness(im).enhance(v),
    "shear_x": lambda im, v: im.transform(im.size, Image.AFFINE, (1, v, 0, 0, 1, 0)),
    "shear_y": lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, v, 1, 0)),
    "solarize": lambda im, v: ImageOps.solarize(im, v),
    "translate_x": lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, v * im.size[0], 0, 1, 0)),
    "translate_y": lambda im, v: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, v * im.size[1])),
}


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """(n, S, S, 3) uint8: noise, low-contrast and flat images (the edge cases of the histogram ops)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[: n // 3] = images[: n // 3] // 4 + 60
    images[-2:] = 7
    return images


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.copy()).permute(0, 3, 1, 2).contiguous()


def test_the_op_list_and_ranges_are_the_official_ones():
    assert len(ra.OPS) == 14 and ra.NUM_OPS == 2 and set(ra.OPS) == set(PIL_OPS) == set(ra.OP_RANGES)
    assert ra.OP_RANGES["rotate"] == (-30.0, 30.0) and ra.OP_RANGES["posterize"] == (4.0, 8.0)
    assert ra.OP_RANGES["solarize"] == (0.0, 256.0) and ra.OP_RANGES["translate_x"] == (-0.3, 0.3)
    assert ra.CUTOUT_MAX == 0.5 and ra.CUTOUT_FILL == (125, 123, 114)


@pytest.mark.parametrize("op", ra.OPS)
def test_each_op_equals_pil_bit_for_bit(op):
    images = _images(24)
    low, high = ra.OP_RANGES[op]
    values = (low + (high - low) * torch.rand(24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).float()
    ours = ra._OP_FUNCTIONS[op](_nchw(images), values).permute(0, 2, 3, 1).numpy()
    for i in range(24):
        expected = np.asarray(PIL_OPS[op](Image.fromarray(images[i]), float(values[i])))
        assert np.array_equal(ours[i], expected), (op, i, float(values[i]))


def test_cutout_equals_the_official_pil_rectangle():
    images = _images(40, seed=2)
    generator = torch.Generator().manual_seed(3)
    params = ra.sample_strong_params(generator, 40, 32)
    params["cutout_size"][:3] = torch.tensor([0.0, 0.01, 0.5])  # no square, a 1-pixel one, the largest
    ours = ra.cutout(_nchw(images), params["cutout_size"], params["cutout_x"], params["cutout_y"])
    for i in range(40):
        v, x, y = (float(params[k][i]) for k in ("cutout_size", "cutout_x", "cutout_y"))
        image = Image.fromarray(images[i]).copy()
        if v > 0:  # the official Cutout / CutoutAbs
            side = v * 32
            x0, y0 = int(max(0, x - side / 2.0)), int(max(0, y - side / 2.0))
            ImageDraw.Draw(image).rectangle((x0, y0, min(32, x0 + side), min(32, y0 + side)), (125, 123, 114))
        assert np.array_equal(ours[i].permute(1, 2, 0).numpy(), np.asarray(image)), i
    assert torch.equal(ours[0], _nchw(images)[0])


def test_sampled_parameters_follow_the_official_distribution():
    params = ra.sample_strong_params(torch.Generator().manual_seed(0), 4000, 32)
    ops, values = params["ra_op"], params["ra_value"]
    counts = torch.bincount(ops.flatten(), minlength=14).double()
    assert counts.min() > 0.8 * 8000 / 14 and counts.max() < 1.2 * 8000 / 14
    assert bool((ops[:, 0] == ops[:, 1]).any())  # drawn with replacement (random.choices)
    for k, name in enumerate(ra.OPS):
        low, high = ra.OP_RANGES[name]
        chosen = values[ops == k]
        assert float(chosen.min()) >= low and float(chosen.max()) <= high
        assert float(chosen.max() - chosen.min()) > 0.9 * (high - low)  # the whole range, no fixed magnitude
    assert 0 <= float(params["cutout_size"].min()) and float(params["cutout_size"].max()) < 0.5
    # np.random.uniform(w) = uniform(low=w, high=1): the centre lies in (1, w]
    for key in ("cutout_x", "cutout_y"):
        assert float(params[key].min()) > 1.0 and float(params[key].max()) <= 32.0


def test_the_same_generator_state_gives_the_same_strong_view_and_no_global_rng_is_touched():
    aug = BatchAugment(size=16, crop=True, flip=True, padding=2, views="weak_strong", **IDENTITY)
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    torch_state, python_state, numpy_state = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    first = aug.apply(images, aug.sample_params(torch.Generator().manual_seed(7), 12))
    second = aug.apply(images, aug.sample_params(torch.Generator().manual_seed(7), 12))
    assert torch.equal(first, second)
    assert torch.equal(torch.random.get_rng_state(), torch_state) and random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    other = aug.apply(images, aug.sample_params(torch.Generator().manual_seed(8), 12))
    assert not torch.equal(other[:, 1], first[:, 1])


def test_view_zero_is_the_normal_crop_flip_and_view_one_its_own_crop_then_randaugment():
    aug = BatchAugment(size=8, crop=True, flip=True, padding=2, views="weak_strong", **IDENTITY)
    images = torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8)
    params = aug.sample_params(torch.Generator().manual_seed(0), 30)
    out = aug.apply(images, params).round().to(torch.uint8)
    assert out.shape == (30, 2, 3, 8, 8) and params["flip"].shape == (30, 2)
    assert bool((params["dy"][:, 0] != params["dy"][:, 1]).any())  # two crops, as the official two transforms
    padded = F.pad(images, (2, 2, 2, 2))
    crops = []
    for view in range(2):
        crop = []
        for i in range(30):
            source = padded[i].flip(-1) if params["flip"][i, view] else padded[i]
            dy, dx = int(params["dy"][i, view]), int(params["dx"][i, view])
            crop.append(source[:, dy : dy + 8, dx : dx + 8])
        crops.append(torch.stack(crop))
    assert torch.equal(out[:, 0], crops[0])
    strong = {k: params[k] for k in ra.STRONG_PARAM_KEYS}
    assert torch.equal(out[:, 1], ra.apply_strong(crops[1], strong))


def test_the_strong_view_needs_its_parameters():
    aug = BatchAugment(size=8, views="weak_strong", **IDENTITY)
    params = aug.sample_params(torch.Generator().manual_seed(0), 2)
    del params["ra_op"]
    with pytest.raises(DataError, match="strong-view parameters"):
        aug.apply(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), params)
    with pytest.raises(ValueError, match=r"uint8 \(N, 1 or 3, H, W\)"):
        ra.apply_strong(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), ra.sample_strong_params(None, 2, 8))


@pytest.mark.parametrize("pipeline", ["fast", "standard"])
def test_weak_strong_through_build_data(make_cfg, pipeline):
    cfg = make_cfg(name="synthetic", synthetic_train=16, synthetic_size=8, batch_size=8, views="weak_strong",
                   crop_padding=1, pipeline=pipeline)
    stream = build_data(cfg, seed=0).train
    first = next(stream.epoch(0))
    assert first["image"].shape == (8, 2, 3, 8, 8)
    assert not torch.equal(first["image"][:, 0], first["image"][:, 1])
    again = next(build_data(cfg, seed=0).train.epoch(0))
    assert torch.equal(again["image"], first["image"])  # a function of (seed, epoch, step) only
    if pipeline == "fast":  # the batch's parameters replay it exactly (what a teacher cache stores)
        assert set(ra.STRONG_PARAM_KEYS) <= set(first["aug"])
        assert torch.equal(stream.augment.apply(stream.images[first["index"]], first["aug"]), first["image"])


def test_standard_path_strong_view_is_a_function_of_the_sample_seed(tmp_path):
    transform = train_transform(augment="crop_flip", size=8, padding=1, mean=[0.0] * 3, std=[1 / 255] * 3,
                                views="weak_strong")
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)

    class OneImage:
        labels = np.array([0])

        def __len__(self) -> int:
            return 1

        def load_pil(self, index: int) -> Image.Image:
            return Image.fromarray(pixels)

    dataset = SeededTrainDataset(OneImage(), transform)  # type: ignore[arg-type]
    state = torch.random.get_rng_state()
    a, b, c = dataset[(0, 11)][0], dataset[(0, 11)][0], dataset[(0, 12)][0]
    assert torch.equal(torch.random.get_rng_state(), state)  # the per-sample seed lives in a forked RNG
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b) and not torch.equal(a[1], c[1])
    # view 1 is RandAugment + Cutout of a crop/flip of the image: with the same draws on uint8 pixels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        transform.augment(Image.fromarray(pixels))  # the weak view's draws
        crop = np.asarray(transform.augment(Image.fromarray(pixels)))
        params = ra.sample_strong_params(None, 1, 8)
    expected = ra.apply_strong(_nchw(crop[None]), params)[0].float()
    assert torch.allclose(a[1], expected, atol=1e-3)
