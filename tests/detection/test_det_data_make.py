"""``kdlab data make-detection``: deterministic COCO-layout canvases with exact boxes, from train/test sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlab.cli.main import main
from kdlab.data.detection import MakeDetectionOptions, build_detection_data, make_detection_dataset
from kdlab.data.errors import DataError
from test_det_data_helpers import SOURCE_COLOURS, detection_cfg, write_solid_imagefolder, zip_dir

CPU = torch.device("cpu")
CIFAR10_ZIP = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-jpg.zip"
SMALL = MakeDetectionOptions(seed=0, train=6, test=3, canvas=32)
LAYOUT = {"annotations/instances_train2017.json", "annotations/instances_val2017.json", "make_detection.json"}


@pytest.fixture
def source_zip(tmp_path: Path) -> Path:
    """A tiny ImageFolder zip (train/<class>/*.png, test/<class>/*.png) of solid-colour images."""
    folder = write_solid_imagefolder(tmp_path / "src")
    return zip_dir(folder, tmp_path / "src.zip")


def files_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def instances(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"instances_{split}2017.json").read_text())


def objects_by_image(data: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {im["id"]: [] for im in data["images"]}
    for ann in data["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


# ------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("source", ["digits", "zip"])
def test_same_seed_same_bytes_other_seed_other_canvases(tmp_path: Path, source_zip: Path, source) -> None:
    src = "digits" if source == "digits" else str(source_zip)
    make_detection_dataset(src, tmp_path / "a", SMALL)
    make_detection_dataset(src, tmp_path / "b", SMALL)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert LAYOUT <= set(a)
    assert sum(name.startswith("train2017/") for name in a) == 6 and sum(name.startswith("val2017/") for name in a) == 3
    assert a == b  # byte-identical images and JSON
    make_detection_dataset(src, tmp_path / "c", MakeDetectionOptions(seed=1, train=6, test=3, canvas=32))
    c = files_of(tmp_path / "c")
    assert set(c) == set(a)
    assert any(a[name] != c[name] for name in a if name.endswith(".png"))
    assert instances(tmp_path / "a", "train") != instances(tmp_path / "c", "train")


def test_splits_draw_independently(tmp_path: Path, source_zip: Path) -> None:
    """Each split has its own stream of draws: more train canvases extend the set, the test canvases stay."""
    make_detection_dataset(str(source_zip), tmp_path / "a", SMALL)
    make_detection_dataset(str(source_zip), tmp_path / "b", MakeDetectionOptions(seed=0, train=9, test=3, canvas=32))
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert all(a[name] == b[name] for name in a if name.endswith(".png"))
    assert instances(tmp_path / "a", "val") == instances(tmp_path / "b", "val")
    assert instances(tmp_path / "b", "train")["images"][:6] == instances(tmp_path / "a", "train")["images"]


def test_summary_and_make_detection_json(tmp_path: Path, source_zip: Path) -> None:
    summary = make_detection_dataset(str(source_zip), tmp_path / "out", SMALL)
    written = json.loads((tmp_path / "out" / "make_detection.json").read_text())
    assert written == summary
    assert summary["classes"] == ["ant", "bee", "cow"] and summary["source"] == str(source_zip)
    assert summary["options"] == {"seed": 0, "train": 6, "test": 3, "canvas": 32, "min_objects": 1, "max_objects": 4,
                                  "min_size": None, "max_size": None, "max_overlap": 0.3}
    assert summary["train_canvases"] == 6 and summary["test_canvases"] == 3
    assert summary["train_objects"] == len(instances(tmp_path / "out", "train")["annotations"])
    assert summary["test_objects"] == len(instances(tmp_path / "out", "val")["annotations"])
    assert isinstance(summary["source_identity"], str) and summary["source_identity"]


# ------------------------------------------------------------------------------------------ content


def test_boxes_are_exact_and_splits_stay_apart(tmp_path: Path, source_zip: Path) -> None:
    """Every source image is one solid colour telling its split and class (train: no blue, test: full blue)."""
    options = MakeDetectionOptions(seed=3, train=12, test=6, canvas=40, max_objects=3, min_size=8, max_size=20,
                                   max_overlap=0.2)
    make_detection_dataset(str(source_zip), tmp_path / "out", options)
    classes = ["ant", "bee", "cow"]
    for split, folder, colours in (("train", "train2017", SOURCE_COLOURS["train"]),
                                   ("val", "val2017", SOURCE_COLOURS["test"])):
        data = instances(tmp_path / "out", split)
        assert data["categories"] == [{"id": k + 1, "name": c} for k, c in enumerate(classes)]
        for image in data["images"]:
            assert (image["width"], image["height"]) == (40, 40)
            pixels = np.asarray(Image.open(tmp_path / "out" / folder / image["file_name"]).convert("RGB"))
            assert pixels.shape == (40, 40, 3)
            # a train canvas holds only train pixels (objects and background), a test canvas only test pixels
            if split == "train":
                assert (pixels[..., 2] == 0).all()
            else:
                assert (pixels[..., 2] >= 150).all()
            objects = objects_by_image(data)[image["id"]]
            assert 1 <= len(objects) <= 3
            cover = np.zeros((40, 40), bool)
            for ann in reversed(objects):  # pasted in annotation order: later objects lie on top
                x, y, w, h = ann["bbox"]
                assert w == h and 8 <= w <= 20 and 0 <= x and 0 <= y and x + w <= 40 and y + h <= 40
                assert ann["area"] == w * h and ann["iscrowd"] == 0
                visible = ~cover[y : y + h, x : x + w]
                colour = colours[classes[ann["category_id"] - 1]]
                assert visible.any() and (pixels[y : y + h, x : x + w][visible] == colour).all()
                cover[y : y + h, x : x + w] = True
            # outside every box: the darkened background, never a whole object colour
            outside = pixels[~cover]
            assert not any((outside == colour).all(axis=1).any() for colour in colours.values())
            for i, a in enumerate(objects):  # limited overlap
                for b in objects[i + 1 :]:
                    assert iou(a["bbox"], b["bbox"]) <= 0.2


def iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_output_trains_with_only_name_and_root(tmp_path: Path, source_zip: Path) -> None:
    """The COCO 2017 layout: data.name=coco data.root=OUT and nothing else (the default batch of 64 fits)."""
    make_detection_dataset(str(source_zip), tmp_path / "out", MakeDetectionOptions(train=64, test=5, canvas=24))
    cfg = detection_cfg(tmp_path / "out")
    cfg.num_workers = 2  # the default, as a user's config would leave it (in memory: no workers started)
    bundle = build_detection_data(cfg, seed=0, device=CPU)
    assert bundle.classes == ["ant", "bee", "cow"] and bundle.category_ids == [1, 2, 3]
    assert bundle.train_size == 64 and bundle.eval.num_samples == 5 and bundle.image_size == 24
    batch = next(iter(bundle.train.epoch(0)))
    assert len(batch["images"]) == 64 and all(t["boxes"].shape[0] >= 1 for t in batch["targets"])


def test_digits_canvases(tmp_path: Path) -> None:
    summary = make_detection_dataset("digits", tmp_path / "out", MakeDetectionOptions(train=4, test=2, canvas=48,
                                                                                      max_objects=3))
    assert summary["classes"] == [str(d) for d in range(10)]
    image = Image.open(tmp_path / "out" / "train2017" / "000001.png")
    assert image.mode == "RGB" and image.size == (48, 48)
    low, high = MakeDetectionOptions(canvas=48).sizes()
    assert (low, high) == (10, 28)
    for ann in instances(tmp_path / "out", "train")["annotations"]:
        assert low <= ann["bbox"][2] <= high and 1 <= ann["category_id"] <= 10


def test_imagefolder_folder_with_a_val_split(tmp_path: Path) -> None:
    folder = write_solid_imagefolder(tmp_path / "src")
    (folder / "test").rename(folder / "val")
    summary = make_detection_dataset(str(folder), tmp_path / "out", SMALL)
    assert summary["test_canvases"] == 3
    pixels = np.asarray(Image.open(tmp_path / "out" / "val2017" / "000001.png"))
    assert (pixels[..., 2] >= 150).all()  # the val/ images (full blue) make the evaluation canvases


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("change, message", [
    ({"train": 0}, "--train and --test must be >= 1, got 0, 3"),
    ({"test": 0}, "--train and --test must be >= 1, got 6, 0"),
    ({"canvas": 8}, "--canvas must be >= 16 pixels, got 8"),
    ({"min_objects": 0}, "need 1 <= --min-objects <= --max-objects, got 0, 4"),
    ({"min_objects": 3, "max_objects": 2}, "need 1 <= --min-objects <= --max-objects, got 3, 2"),
    ({"min_size": 1}, "need 2 <= --min-size <= --max-size <= --canvas, got 1, 19"),
    ({"min_size": 20, "max_size": 10}, "need 2 <= --min-size <= --max-size <= --canvas, got 20, 10"),
    ({"max_size": 33}, "need 2 <= --min-size <= --max-size <= --canvas, got 7, 33"),
    ({"max_overlap": 1.0}, "--max-overlap must be in [0, 1), got 1.0"),
    ({"max_overlap": -0.1}, "--max-overlap must be in [0, 1), got -0.1"),
])
def test_option_validation(tmp_path: Path, change, message) -> None:
    options = MakeDetectionOptions(**{**SMALL.__dict__, **change})
    with pytest.raises(DataError) as info:
        make_detection_dataset("digits", tmp_path / "out", options)
    assert str(info.value) == message
    assert not (tmp_path / "out").exists()


def test_bad_source(tmp_path: Path) -> None:
    missing = r"^make-detection SOURCE .*nowhere: no such folder or zip \(or the name digits\)"
    with pytest.raises(DataError, match=missing):
        make_detection_dataset(str(tmp_path / "nowhere"), tmp_path / "out", SMALL)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"^make-detection SOURCE .*flat: .*lacks the ImageFolder layout"):
        make_detection_dataset(str(tmp_path / "flat"), tmp_path / "out", SMALL)
    only_train = write_solid_imagefolder(tmp_path / "only_train")
    shutil.rmtree(only_train / "test")
    with pytest.raises(DataError, match=r"^make-detection SOURCE .*only_train: no val/ or test/ split"):
        make_detection_dataset(str(only_train), tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()


def test_out_must_be_new_or_empty(tmp_path: Path, source_zip: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    make_detection_dataset(str(source_zip), out, SMALL)  # an empty folder is fine
    with pytest.raises(DataError) as info:
        make_detection_dataset(str(source_zip), out, SMALL)
    assert str(info.value) == f"make-detection OUT {out} exists and is not an empty folder (pass --overwrite to " \
                              "replace it)"
    (out / "extra.txt").write_text("x")
    make_detection_dataset(str(source_zip), out, MakeDetectionOptions(train=2, test=1, canvas=32), overwrite=True)
    assert not (out / "extra.txt").exists() and len(list((out / "train2017").iterdir())) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="exists and is not an empty folder"):
        make_detection_dataset(str(source_zip), tmp_path / "file", SMALL, overwrite=True)


def test_overwrite_keeps_out_when_the_source_is_bad(tmp_path: Path, source_zip: Path) -> None:
    out = tmp_path / "out"
    make_detection_dataset(str(source_zip), out, SMALL)
    before = files_of(out)
    with pytest.raises(DataError, match="make-detection SOURCE"):
        make_detection_dataset(str(tmp_path / "missing.zip"), out, SMALL, overwrite=True)
    assert files_of(out) == before


# ------------------------------------------------------------------------------------------ CLI


def test_cli_writes_and_reports(tmp_path: Path, source_zip: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["data", "make-detection", str(source_zip), str(out), "--seed", "2", "--train", "5", "--test", "2",
            "--canvas", "32", "--min-objects", "2", "--max-objects", "2", "--min-size", "8", "--max-size", "12",
            "--max-overlap", "0.1"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote 5 train canvases (") and line.endswith(f"of 3 classes to {out}")
    made = json.loads((out / "make_detection.json").read_text())
    assert made["options"] == {"seed": 2, "train": 5, "test": 2, "canvas": 32, "min_objects": 2, "max_objects": 2,
                               "min_size": 8, "max_size": 12, "max_overlap": 0.1}
    assert main([*argv, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == made
    assert files_of(out)["make_detection.json"] == (out / "make_detection.json").read_bytes()


@pytest.mark.parametrize("case", ["bad source", "out not empty", "bad option"])
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, source_zip: Path, capsys, case) -> None:
    out = tmp_path / "out"
    if case == "bad source":
        argv = ["data", "make-detection", str(tmp_path / "nowhere.zip"), str(out)]
        expected = f"kdlab data: error: make-detection SOURCE {tmp_path / 'nowhere.zip'}: no such folder or zip"
    elif case == "out not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        argv = ["data", "make-detection", str(source_zip), str(out), "--train", "2", "--test", "1"]
        expected = f"kdlab data: error: make-detection OUT {out} exists and is not an empty folder"
    else:
        argv = ["data", "make-detection", "digits", str(out), "--max-overlap", "1.5"]
        expected = "kdlab data: error: --max-overlap must be in [0, 1), got 1.5"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected)
    if case == "out not empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()


# ------------------------------------------------------------------------------------------ real data


def test_cifar10_zip(tmp_path: Path) -> None:
    if not CIFAR10_ZIP.is_file():
        pytest.skip(f"needs the CIFAR-10 JPEG zip at {CIFAR10_ZIP} (../shared, absent in a user's clone)")
    summary = make_detection_dataset(str(CIFAR10_ZIP), tmp_path / "out", MakeDetectionOptions(train=20, test=10))
    assert summary["train_canvases"] == 20 and summary["test_canvases"] == 10 and len(summary["classes"]) == 10
    bundle = build_detection_data(detection_cfg(tmp_path / "out", "data.batch_size=4"), seed=0, device=CPU)
    assert bundle.num_classes == 10 and bundle.train_size == 20 and bundle.image_size == 96
    for ann in bundle.eval_ground_truth["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 20 <= w == h <= 56 and x + w <= 96 and y + h <= 96
    batch = next(iter(bundle.train.epoch(0)))
    assert all(image.shape == (3, 96, 96) for image in batch["images"])
