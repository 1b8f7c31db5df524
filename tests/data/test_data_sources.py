"""Format readers: image folders (dir and zip), CIFAR pickles, digits, synthetic, and dataset_info."""

from __future__ import annotations

import shutil

import pytest
import torch

from kdlab.data import DataError, build_data, dataset_info


def _eval_pixels(bundle) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(bundle.eval)
    return torch.cat([b["image"] for b in batches]), torch.cat([b["target"] for b in batches])


def test_imagefolder_dir_decodes_exact_pixels_in_class_order(imagefolder_dir, make_cfg):
    root, written = imagefolder_dir
    bundle = build_data(make_cfg(name="imagefolder", root=str(root), batch_size=4, mean=[0.0] * 3, std=[1 / 255] * 3), seed=0)
    assert bundle.classes == ["cat", "dog", "eel"]
    assert (bundle.num_classes, bundle.train_size, bundle.eval.num_samples) == (3, 12, 6)
    images, targets = _eval_pixels(bundle)
    assert targets.tolist() == [0, 0, 1, 1, 2, 2]
    expected = written["val/dog/001.png"]
    assert torch.equal(images[3].round().to(torch.uint8), torch.from_numpy(expected).permute(2, 0, 1))


@pytest.mark.parametrize("under", ["", "top/"])
def test_imagefolder_zip_matches_dir(imagefolder_dir, make_cfg, datagen, tmp_path, under):
    root, _ = imagefolder_dir
    archive = datagen.zip_folder(root, tmp_path / "data.zip", under=under)
    from_dir = build_data(make_cfg(name="imagefolder", root=str(root), batch_size=4), seed=0)
    from_zip = build_data(make_cfg(name="imagefolder", root=str(archive), batch_size=4), seed=0)
    assert from_zip.classes == from_dir.classes
    assert torch.equal(_eval_pixels(from_zip)[0], _eval_pixels(from_dir)[0])
    assert torch.equal(next(from_zip.train.epoch(1))["image"], next(from_dir.train.epoch(1))["image"])


def test_imagefolder_uses_test_split_when_no_val(tmp_path, make_cfg, datagen):
    datagen.write_imagefolder(tmp_path / "d", eval_split="test")
    info = dataset_info(make_cfg(name="imagefolder", root=str(tmp_path / "d")))
    assert info["eval_split"] == "test"
    assert info["splits"] == {"train": {"samples": 12, "classes": 3}, "test": {"samples": 6, "classes": 3}}


def test_imagefolder_class_mismatch_names_the_classes(tmp_path, make_cfg, datagen):
    root = tmp_path / "d"
    datagen.write_imagefolder(root)
    shutil.rmtree(root / "val" / "eel")
    datagen.write_imagefolder(root, train_per_class=0, eval_per_class=1, classes=("fox",))
    shutil.rmtree(root / "train" / "fox")
    with pytest.raises(DataError, match=r"only in train: \['eel'\].*only in val: \['fox'\]"):
        dataset_info(make_cfg(name="imagefolder", root=str(root)))


def test_imagefolder_empty_class_folder_is_an_error(imagefolder_dir, make_cfg):
    root, _ = imagefolder_dir
    (root / "train" / "empty").mkdir()
    (root / "val" / "empty").mkdir()
    with pytest.raises(DataError, match=r"train/empty.*holds no images"):
        build_data(make_cfg(name="imagefolder", root=str(root)), seed=0)


def test_imagefolder_missing_root_and_bad_layout(tmp_path, make_cfg, datagen):
    with pytest.raises(DataError, match="does not exist"):
        dataset_info(make_cfg(name="imagefolder", root=str(tmp_path / "nowhere")))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="train/<class>"):
        dataset_info(make_cfg(name="imagefolder", root=str(tmp_path / "flat")))
    archive = datagen.zip_folder(tmp_path / "flat", tmp_path / "flat.zip", under="x/y/")
    with pytest.raises(DataError, match=r"flat\.zip lacks the ImageFolder layout"):
        dataset_info(make_cfg(name="imagefolder", root=str(archive)))
    with pytest.raises(DataError, match="data.root is required"):
        dataset_info(make_cfg(name="imagefolder", root=None))


def test_imagefolder_without_eval_split_is_an_error(tmp_path, make_cfg, datagen):
    datagen.write_imagefolder(tmp_path / "d", eval_per_class=0)
    shutil.rmtree(tmp_path / "d" / "val")
    with pytest.raises(DataError, match="no val/ or test/"):
        dataset_info(make_cfg(name="imagefolder", root=str(tmp_path / "d")))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("point_at_batch_folder", [False, True])
def test_cifar_pickles(tmp_path, make_cfg, datagen, name, point_at_batch_folder):
    folder = datagen.write_cifar(tmp_path, name)
    root = folder if point_at_batch_folder else tmp_path
    bundle = build_data(make_cfg(name=name, root=str(root), batch_size=2, augment="none"), seed=0)
    train_count = 30 if name == "cifar10" else 6
    assert (bundle.train_size, bundle.eval.num_samples, bundle.in_chans, bundle.image_size) == (train_count, 6, 3, 32)
    assert bundle.num_classes == (10 if name == "cifar10" else 100)
    assert bundle.classes[:2] == ["c0", "c1"]
    assert bundle.mean[0] == pytest.approx(0.4914 if name == "cifar10" else 0.5071)


def test_cifar_missing_batch_is_named(tmp_path, make_cfg, datagen):
    folder = datagen.write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py is missing data_batch_3"):
        build_data(make_cfg(name="cifar10", root=str(tmp_path)), seed=0)
    with pytest.raises(DataError, match="no cifar-100-python"):
        build_data(make_cfg(name="cifar100", root=str(tmp_path)), seed=0)


def test_digits_split_is_stratified_fixed_and_scaled(make_cfg):
    info = dataset_info(make_cfg(name="digits"))
    train, test = info["splits"]["train"]["samples"], info["splits"]["test"]["samples"]
    assert train + test == 1797 and abs(test / 1797 - 0.2) < 0.01
    bundle = build_data(make_cfg(name="digits", batch_size=16, mean=[0.0], std=[1 / 255]), seed=3)
    images = torch.cat([b["image"] for b in bundle.train_eval])
    assert (bundle.in_chans, bundle.image_size) == (1, 8)
    assert images.min() == 0 and images.max() == 255
    again = build_data(make_cfg(name="digits", batch_size=16, mean=[0.0], std=[1 / 255]), seed=99)
    assert torch.equal(images, torch.cat([b["image"] for b in again.train_eval]))


def test_synthetic_is_deterministic_and_sized_by_config(make_cfg):
    cfg = make_cfg(name="synthetic", synthetic_train=40, synthetic_test=12, synthetic_classes=4, synthetic_size=12, batch_size=8)
    first, second = build_data(cfg, seed=0), build_data(cfg, seed=1)
    assert (first.train_size, first.eval.num_samples, first.num_classes, first.image_size) == (40, 12, 4, 12)
    assert torch.equal(_eval_pixels(first)[0], _eval_pixels(second)[0])
    assert first.fingerprint == second.fingerprint


def test_synthetic_classes_are_separable_by_mean_colour(make_cfg):
    bundle = build_data(make_cfg(name="synthetic", synthetic_train=200, synthetic_test=100, batch_size=8), seed=0)
    train = list(bundle.train_eval)
    x = torch.cat([b["image"] for b in train]).mean(dim=(2, 3))
    y = torch.cat([b["target"] for b in train])
    centroids = torch.stack([x[y == c].mean(0) for c in range(bundle.num_classes)])
    evaluation = list(bundle.eval)
    xe = torch.cat([b["image"] for b in evaluation]).mean(dim=(2, 3))
    ye = torch.cat([b["target"] for b in evaluation])
    accuracy = (torch.cdist(xe, centroids).argmin(1) == ye).float().mean()
    assert accuracy > 0.8


def test_subset_is_fixed_sorted_and_seed_independent(make_cfg):
    cfg = make_cfg(name="synthetic", synthetic_train=100, subset=30, batch_size=10)
    a, b = build_data(cfg, seed=0), build_data(cfg, seed=5)
    full = build_data(make_cfg(name="synthetic", synthetic_train=100, batch_size=10), seed=0)
    assert a.train_size == 30 and a.fingerprint == b.fingerprint != full.fingerprint
    sub = torch.cat([x["image"] for x in a.train_eval])
    assert torch.equal(sub, torch.cat([x["image"] for x in b.train_eval]))
    every = torch.cat([x["image"] for x in full.train_eval])
    matches = [int((every == img).flatten(1).all(1).nonzero()[0]) for img in sub]
    assert matches == sorted(matches) and len(set(matches)) == 30
    with pytest.raises(DataError, match="data.subset=500 exceeds the 100"):
        build_data(make_cfg(name="synthetic", synthetic_train=100, subset=500), seed=0)


def test_mean_std_override_and_length_check(make_cfg):
    bundle = build_data(make_cfg(name="synthetic", synthetic_train=16, batch_size=8, mean=[0.5] * 3, std=[0.5] * 3), seed=0)
    assert bundle.mean == (0.5, 0.5, 0.5) and bundle.std == (0.5, 0.5, 0.5)
    with pytest.raises(DataError, match=r"data.mean has 2 values"):
        build_data(make_cfg(name="synthetic", mean=[0.5, 0.5]), seed=0)


def test_dataset_info_on_folder_does_not_decode(imagefolder_dir, make_cfg, monkeypatch):
    import kdlab.data.imageio as imageio

    root, _ = imagefolder_dir
    monkeypatch.setattr(imageio, "decode_image", lambda *a, **k: pytest.fail("dataset_info decoded an image"))
    info = dataset_info(make_cfg(name="imagefolder", root=str(root)))
    assert info["classes"] == ["cat", "dog", "eel"]
    assert info["splits"]["val"] == {"samples": 6, "classes": 3}


def test_fast_path_refuses_standard_only_augmentation(make_cfg):
    with pytest.raises(DataError, match="data.augment=mocov2 needs the standard path"):
        build_data(make_cfg(name="synthetic", pipeline="fast", augment="mocov2"), seed=0)


def test_auto_pipeline_picks_by_size_and_augment(make_cfg):
    from kdlab.data.fast import FastTrainStream
    from kdlab.data.standard import StandardTrainStream

    small = build_data(make_cfg(name="synthetic", synthetic_train=16, batch_size=8), seed=0)
    large = build_data(make_cfg(name="synthetic", synthetic_train=16, synthetic_size=72, batch_size=8), seed=0)
    moco = build_data(make_cfg(name="synthetic", synthetic_train=16, batch_size=8, augment="mocov2"), seed=0)
    assert isinstance(small.train, FastTrainStream)
    assert isinstance(large.train, StandardTrainStream) and isinstance(moco.train, StandardTrainStream)
    batch = next(moco.train.epoch(0))
    assert batch["image"].shape == (8, 3, 32, 32)
    assert next(iter(large.eval))["image"].shape[-1] == 72


def test_image_size_resizes_on_both_paths(make_cfg):
    for pipeline in ("fast", "standard"):
        bundle = build_data(
            make_cfg(name="synthetic", synthetic_train=16, synthetic_size=16, image_size=8, batch_size=8, pipeline=pipeline), seed=0
        )
        assert bundle.image_size == 8
        assert next(bundle.train.epoch(0))["image"].shape == (8, 3, 8, 8)
        assert next(iter(bundle.eval))["image"].shape[-2:] == (8, 8)


def test_jpeg_zip_decodes_close_to_the_written_pixels(tmp_path, make_cfg, datagen):
    written = datagen.write_imagefolder(tmp_path / "jpg", fmt="JPEG", size=16)
    archive = datagen.zip_folder(tmp_path / "jpg", tmp_path / "jpg.zip")
    cfg = make_cfg(name="imagefolder", root=str(archive), batch_size=4, mean=[0.0] * 3, std=[1 / 255] * 3)
    images, _ = _eval_pixels(build_data(cfg, seed=0))
    assert images.shape == (6, 3, 16, 16)
    original = torch.from_numpy(written["val/cat/000.jpg"]).permute(2, 0, 1).float()
    assert (images[0] - original).abs().mean() < 60  # lossy, but the same picture


def test_pool_decoding_matches_serial_decoding(imagefolder_dir, make_cfg, monkeypatch, tmp_path):
    import kdlab.data.decode as decode

    root, _ = imagefolder_dir
    serial = _eval_pixels(build_data(make_cfg(name="imagefolder", root=str(root), batch_size=4), seed=0))[0]
    monkeypatch.setattr(decode, "_MIN_FOR_POOL", 1)
    monkeypatch.setattr(decode, "_CHUNK", 4)
    cfg = make_cfg(name="imagefolder", root=str(root), batch_size=4, cache_dir=str(tmp_path / "other"))
    pooled = build_data(cfg, seed=0)
    assert torch.equal(_eval_pixels(pooled)[0], serial)
    assert pooled.train_size == 12
