"""Fast-path cache: fingerprints, atomic writes, and undecodable files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from kdlab.data import DataError, build_data, prepare_cache


def _folder_cfg(make_cfg, root, **overrides):
    return make_cfg(name="imagefolder", root=str(root), batch_size=4, **overrides)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_prepare_cache_reports_and_reuses(imagefolder_dir, make_cfg, cache_dir):
    root, _ = imagefolder_dir
    first = prepare_cache(_folder_cfg(make_cfg, root), progress=False)
    assert first["splits"]["train"]["samples"] == 12 and first["splits"]["val"]["samples"] == 6
    assert first["splits"]["train"]["shape"] == [12, 3, 8, 8]
    assert not first["splits"]["train"]["from_cache"]
    assert Path(first["splits"]["train"]["path"]).parent.parent == cache_dir
    second = prepare_cache(_folder_cfg(make_cfg, root), progress=False)
    assert second["splits"]["train"]["from_cache"] and second["splits"]["val"]["from_cache"]
    assert second["fingerprint"] == first["fingerprint"]


def test_in_memory_datasets_need_no_cache(make_cfg, cache_dir):
    report = prepare_cache(make_cfg(name="digits"), progress=False)
    assert report["splits"]["train"]["cached"] is False
    assert not cache_dir.exists()


def test_touching_a_file_invalidates_the_cache(imagefolder_dir, make_cfg):
    root, _ = imagefolder_dir
    first = prepare_cache(_folder_cfg(make_cfg, root), progress=False)
    target = root / "train" / "dog" / "000.png"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    second = prepare_cache(_folder_cfg(make_cfg, root), progress=False)
    assert not second["splits"]["train"]["from_cache"]
    assert second["fingerprint"] != first["fingerprint"]
    assert second["splits"]["train"]["path"] != first["splits"]["train"]["path"]


def test_replacing_the_zip_redecodes_new_pixels(tmp_path, make_cfg, datagen):
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    datagen.write_imagefolder(folder_a)
    datagen.write_imagefolder(folder_b, train_per_class=5)
    archive = tmp_path / "data.zip"
    datagen.zip_folder(folder_a, archive)
    before = build_data(_folder_cfg(make_cfg, archive), seed=0)
    replacement = datagen.zip_folder(folder_b, tmp_path / "new.zip")
    os.replace(replacement, archive)
    report = prepare_cache(_folder_cfg(make_cfg, archive), progress=False)
    assert not report["splits"]["train"]["from_cache"]
    after = build_data(_folder_cfg(make_cfg, archive), seed=0)
    assert (before.train_size, after.train_size) == (12, 15)
    assert before.fingerprint != after.fingerprint


def test_leftover_temp_folder_is_ignored(imagefolder_dir, make_cfg, cache_dir):
    root, _ = imagefolder_dir
    cfg = _folder_cfg(make_cfg, root)
    report = prepare_cache(cfg, progress=False)
    final = Path(report["splits"]["train"]["path"])
    # Simulate a run killed mid-write: a temp folder holding garbage, and no complete entry.
    temp = final.parent / f".tmp-{final.name}-999-deadbeef"
    final.rename(temp)
    (temp / "images.npy").write_bytes(b"garbage")
    again = prepare_cache(cfg, progress=False)
    assert not again["splits"]["train"]["from_cache"]
    assert again["splits"]["train"]["path"] == str(final)
    assert temp.exists()  # left alone, never read
    assert build_data(cfg, seed=0).train_size == 12


def test_folder_without_completion_marker_is_not_used(imagefolder_dir, make_cfg):
    root, _ = imagefolder_dir
    cfg = _folder_cfg(make_cfg, root)
    final = Path(prepare_cache(cfg, progress=False)["splits"]["train"]["path"])
    (final / "meta.json").unlink()
    report = prepare_cache(cfg, progress=False)
    assert not report["splits"]["train"]["from_cache"]
    assert (final / "meta.json").is_file()


@pytest.mark.parametrize("pipeline", ["fast", "standard"])
def test_undecodable_image_error_names_the_file(imagefolder_dir, make_cfg, pipeline):
    root, _ = imagefolder_dir
    _truncate(root / "train" / "eel" / "002.png")
    bundle_or_error = None
    with pytest.raises(DataError, match=r"train/eel/002\.png"):
        bundle_or_error = build_data(_folder_cfg(make_cfg, root, pipeline=pipeline), seed=0)
        for _ in bundle_or_error.train_eval:  # the standard path decodes lazily
            pass


def test_undecodable_image_in_zip_error_names_member(imagefolder_dir, make_cfg, datagen, tmp_path):
    root, _ = imagefolder_dir
    (root / "val" / "cat" / "001.png").write_bytes(b"not an image at all")
    archive = datagen.zip_folder(root, tmp_path / "d.zip")
    with pytest.raises(DataError, match=r"val/cat/001\.png in .*d\.zip"):
        prepare_cache(_folder_cfg(make_cfg, archive), progress=False)


@pytest.mark.parametrize("pipeline", ["fast", "standard"])
def test_skip_mode_drops_and_reports_undecodable_files(imagefolder_dir, make_cfg, pipeline):
    root, _ = imagefolder_dir
    _truncate(root / "train" / "eel" / "002.png")
    cfg = _folder_cfg(make_cfg, root, pipeline=pipeline, on_corrupt="skip")
    with pytest.warns(UserWarning, match=r"skipped 1 undecodable.*eel/002\.png"):
        bundle = build_data(cfg, seed=0)
    assert bundle.train_size == 11
    targets = torch.cat([b["target"] for b in bundle.train_eval])
    assert targets.bincount().tolist() == [4, 4, 3]
    with pytest.warns(UserWarning, match="skipped 1"):  # said again when read back from the cache
        build_data(cfg, seed=0)


def test_skip_report_of_prepare_cache(imagefolder_dir, make_cfg):
    root, _ = imagefolder_dir
    _truncate(root / "train" / "cat" / "000.png")
    (root / "train" / "dog" / "003.png").write_bytes(b"")
    cfg = _folder_cfg(make_cfg, root, on_corrupt="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prepare_cache(cfg, progress=False)
    train = report["splits"]["train"]
    assert report["skipped"] == 2 and train["skipped"] == 2 and train["samples"] == 10
    assert any("cat/000.png" in f for f in train["skipped_files"])
    assert any("dog/003.png" in f for f in train["skipped_files"])
    # The skip-mode cache must not silently serve a run that wants errors.
    with pytest.raises(DataError, match=r"cat/000\.png"):
        prepare_cache(_folder_cfg(make_cfg, root), progress=False)
