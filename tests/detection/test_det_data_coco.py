"""The COCO reader of ``build_detection_data`` on tiny generated instances files and PNGs."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import kdlab.data.detection.build as build_module
from kdlab.data.detection import build_detection_data
from kdlab.data.errors import DataError
from test_det_data_helpers import (
    CATEGORIES, EVAL_IMAGES, TRAIN_IMAGES, ann_entry, detection_cfg, image_entry, write_coco, write_json, write_png,
    zip_dir,
)

CPU = torch.device("cpu")


def build(root: Path, *overrides: str, **kwargs):
    return build_detection_data(detection_cfg(root, "data.batch_size=2", *overrides), seed=0, device=CPU, **kwargs)


def data_error(root: Path, *overrides: str) -> str:
    """The one-line DataError message of building ``root`` (data.root replaced by ROOT)."""
    with pytest.raises(DataError) as info:
        build(root, *overrides)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(root), "ROOT")


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, dict, dict]:
    train, evaluation = write_coco(tmp_path)
    return tmp_path, train, evaluation


def rewrite(root: Path, split: str, data: dict) -> None:
    write_json(root / "annotations" / f"instances_{split}2017.json", data)


# ------------------------------------------------------------------------------------------ reading


def test_default_layout_reads_every_image_and_box(coco) -> None:
    root, train, evaluation = coco
    bundle = build(root)
    assert bundle.num_classes == 3 and bundle.in_chans == 3
    assert bundle.classes == ["car", "train", "zebra"]  # ordered by category id, not by file order
    assert bundle.train_size == len(TRAIN_IMAGES) and bundle.eval.num_samples == len(EVAL_IMAGES)
    assert bundle.image_size == 40 and bundle.min_image_side == 24
    records = bundle.train.dataset.records
    assert [r.image_id for r in records] == [im["id"] for im in train["images"]]
    first = records[0]
    assert (first.width, first.height) == (40, 30)
    # COCO [x, y, w, h] -> xyxy
    np.testing.assert_array_equal(first.boxes, [[2, 3, 12, 11], [20, 10, 35, 22]])
    # the pixels read are the PNG's; targets are float boxes and int64 labels
    image, target, position, image_id = bundle.train.dataset[(0, None)]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert (position, image_id) == (0, 1)
    bright = image.mean(0) > 0.5
    assert bright[3:11, 2:12].all() and bright[10:22, 20:35].all()
    assert int(bright.sum()) == 8 * 10 + 12 * 15


def test_category_ids_round_trip(coco) -> None:
    """Non-contiguous ids 3, 7, 42 -> labels 1, 2, 3 -> ``category_ids`` back; the ground truth keeps the ids."""
    root, train, evaluation = coco
    bundle = build(root)
    assert bundle.category_ids == [3, 7, 42]
    by_image: dict[int, list[int]] = {}
    for ann in train["annotations"]:
        if ann["bbox"][2] > 0 and ann["bbox"][3] > 0:
            by_image.setdefault(ann["image_id"], []).append(ann["category_id"])
    for record in bundle.train.dataset.records:
        assert set(record.labels.tolist()) <= {1, 2, 3}
        assert [bundle.category_ids[int(l) - 1] for l in record.labels] == by_image.get(record.image_id, [])
    truth = bundle.eval_ground_truth
    assert {c["id"]: c["name"] for c in truth["categories"]} == {c["id"]: c["name"] for c in CATEGORIES}
    assert [im["id"] for im in truth["images"]] == [im["id"] for im in evaluation["images"]]
    expected = sorted((a["image_id"], a["category_id"], tuple(a["bbox"])) for a in evaluation["annotations"])
    got = sorted((a["image_id"], a["category_id"], tuple(a["bbox"])) for a in truth["annotations"])
    assert got == expected
    assert {a["category_id"] for a in truth["annotations"]} <= {3, 7, 42}


def test_crowd_boxes_are_evaluated_but_not_trained_on(coco) -> None:
    root, _, _ = coco
    bundle = build(root)
    # b.png: a normal box (category 7) and a crowd box (category 3)
    image, target, _, image_id = bundle.train.dataset[(1, None)]
    assert image_id == 11
    assert target["boxes"].tolist() == [[5.0, 5.0, 17.0, 17.0]] and target["labels"].tolist() == [2]
    for batch in bundle.train.epoch(0):
        for target, image_id in zip(batch["targets"], batch["image_id"].tolist()):
            if image_id == 11:
                assert target["labels"].tolist() == [2]
    truth = bundle.eval_ground_truth["annotations"]
    crowd = [a for a in truth if a["iscrowd"] == 1]
    assert len(crowd) == 1 and crowd[0]["image_id"] == 5001 and crowd[0]["category_id"] == 42
    assert crowd[0]["bbox"] == [15.0, 2.0, 14.0, 20.0]
    assert all(a["iscrowd"] == 0 for a in truth if a is not crowd[0])
    # the evaluation images yield no crowd boxes as targets either
    eval_target = bundle.eval.dataset[(0, None)][1]
    assert eval_target["labels"].tolist() == [2]


def test_zero_area_box_is_dropped_with_a_warning(coco, caplog) -> None:
    root, _, _ = coco
    with caplog.at_level(logging.WARNING, logger="kdlab.data"):
        bundle = build(root)
    warnings = [r for r in caplog.records if r.name == "kdlab.data" and r.levelno == logging.WARNING]
    assert any("instances_train2017.json" in r.getMessage() and "dropped 1 box" in r.getMessage() for r in warnings)
    record = bundle.train.dataset.records[3]  # d.png: a zero-width box and a normal one
    assert record.boxes.tolist() == [[10.0, 2.0, 30.0, 20.0]] and record.labels.tolist() == [2]


def test_image_without_boxes_is_kept(coco) -> None:
    root, _, _ = coco
    bundle = build(root)
    record = bundle.train.dataset.records[2]
    assert record.file == "c.png" and record.boxes.shape == (0, 4)
    image, target, _, _ = bundle.train.dataset[(2, 0)]
    assert image.shape == (3, 32, 32)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert any(im["id"] == 5021 for im in bundle.eval_ground_truth["images"])  # v3.png: no boxes, still evaluated
    seen = {int(i) for batch in bundle.train.epoch(0) for i in batch["image_id"]}
    assert 21 in seen


@pytest.mark.parametrize("under", ["", "train2017/"])
def test_image_folder_as_a_zip(coco, under) -> None:
    """``train2017.zip`` next to a missing ``train2017/`` (files at the zip's top level or under one folder)."""
    root, _, _ = coco
    reference = build(root)
    zip_dir(root / "train2017", root / "train2017.zip", under=under)
    shutil.rmtree(root / "train2017")
    zipped = build(root)
    assert zipped.train.dataset.container.is_zip
    for position in range(zipped.train_size):
        a, b = reference.train.dataset[(position, None)], zipped.train.dataset[(position, None)]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])


def test_explicit_keys_and_a_named_zip(tmp_path: Path) -> None:
    write_coco(tmp_path, train_images="imgs/tr", eval_images="imgs/ev", train_annotations="tr.json",
               eval_annotations="meta/ev.json")
    zip_dir(tmp_path / "imgs" / "ev", tmp_path / "ev.zip")
    bundle = build(tmp_path, "data.train_images=imgs/tr", "data.eval_images=ev.zip",
                   "data.train_annotations=tr.json", "data.eval_annotations=meta/ev.json")
    assert bundle.train_size == len(TRAIN_IMAGES) and bundle.eval.dataset.container.is_zip
    image = bundle.eval.dataset[(1, None)][0]
    assert image.shape == (3, 32, 24)


def test_different_categories_in_train_and_eval(coco) -> None:
    root, _, evaluation = coco
    evaluation["categories"] = evaluation["categories"][:2]
    evaluation["annotations"] = [a for a in evaluation["annotations"] if a["category_id"] != 3]
    rewrite(root, "val", evaluation)
    assert data_error(root) == "instances_val2017.json: category ids [3, 42] differ from instances_train2017.json's " \
                               "[3, 7, 42]: the training and evaluation files must list the same categories"


def test_same_category_ids_with_other_names(coco) -> None:
    root, _, evaluation = coco
    evaluation["categories"][0]["name"] = "horse"  # id 42
    rewrite(root, "val", evaluation)
    assert data_error(root) == "instances_val2017.json: category 42 is named 'horse' but 'zebra' in " \
                               "instances_train2017.json: the training and evaluation files must list the same " \
                               "categories"


def test_fingerprint_follows_the_annotations(coco) -> None:
    """Same files: same fingerprint; an edited box, another image folder or a subset: another one."""
    root, train, _ = coco
    first = build(root).fingerprint
    assert build(root).fingerprint == first
    train["annotations"][0]["bbox"] = [2, 3, 10, 7]
    rewrite(root, "train", train)
    edited = build(root).fingerprint
    assert edited != first
    shutil.copytree(root / "train2017", root / "other")
    assert build(root, "data.train_images=other").fingerprint not in (first, edited)
    assert build(root, "data.subset=4").fingerprint not in (first, edited)


def test_in_memory_threshold(coco, monkeypatch) -> None:
    root, _, _ = coco
    assert build(root).train.dataset.decoded is not None  # a few kB: decoded once, kept in memory
    monkeypatch.setattr(build_module, "IN_MEMORY_BYTES", 0)
    lazy = build(root)
    assert lazy.train.dataset.decoded is None and lazy.eval.dataset.decoded is None
    assert lazy.train.dataset[(0, None)][0].shape == (3, 30, 40)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("part", ["images", "annotations", "categories"])
def test_missing_top_level_list(coco, split, part) -> None:
    root, train, evaluation = coco
    data = train if split == "train" else evaluation
    del data[part]
    rewrite(root, split, data)
    assert data_error(root) == f'instances_{split}2017.json: missing "{part}"'


def test_annotation_naming_an_unknown_image(tmp_path: Path) -> None:
    """The exact form: file name, list index, annotation id, what is wrong."""
    write_coco(tmp_path)
    images = [image_entry(k, f"{k}.png", 20, 20) for k in range(1, 5)]
    for image in images:
        write_png(tmp_path / "train2017" / image["file_name"], 20, 20)
    annotations = [ann_entry(1000 + i, 1 + i % 4, 3, [1, 1, 5, 5]) for i in range(20)]
    annotations[17] = ann_entry(123, 99, 3, [1, 1, 5, 5])
    write_json(tmp_path / "instances_train.json", {"images": images, "annotations": annotations,
                                                   "categories": CATEGORIES})
    with pytest.raises(DataError) as info:
        build(tmp_path, "data.train_annotations=instances_train.json")
    assert str(info.value) == "instances_train.json: annotations[17] (id 123): image_id 99 not in images"


@pytest.mark.parametrize("change, expected", [
    ({"bbox": [30, 10, 15, 12]}, "bbox [30, 10, 15, 12] outside image 1 (40x30)"),
    ({"bbox": [-3, 0, 5, 5]}, "bbox [-3, 0, 5, 5] outside image 1 (40x30)"),
    ({"bbox": [1, 2, "3", 4]}, "bbox must be 4 numbers [x, y, width, height], got [1, 2, '3', 4]"),
    ({"bbox": [1, 2, 3]}, "bbox must be 4 numbers [x, y, width, height], got [1, 2, 3]"),
    ({"bbox": None}, "bbox must be 4 numbers [x, y, width, height], got None"),
    ({"category_id": 5}, "category_id 5 not in categories"),
    ({"category_id": [3]}, "category_id [3] not in categories"),
    ({"image_id": [1]}, "image_id [1] not in images"),
])
def test_bad_annotation_entry(coco, change, expected) -> None:
    root, train, _ = coco
    train["annotations"][1].update(change)
    rewrite(root, "train", train)
    assert data_error(root) == f"instances_train2017.json: annotations[1] (id 101): {expected}"


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "instances_val2017.json: not a readable JSON file"),
    (b"\xff\xfe\x00garbage", "instances_val2017.json: not a readable JSON file"),
    (b"[1, 2]", "instances_val2017.json: expected a JSON object with images, annotations and categories, got list"),
    (b'{"images": {}, "annotations": [], "categories": []}', 'instances_val2017.json: "images" must be a list'),
])
def test_not_an_instances_file(coco, content, expected) -> None:
    root, _, _ = coco
    (root / "annotations" / "instances_val2017.json").write_bytes(content)
    assert data_error(root).startswith(expected)


def test_bad_image_and_category_entries(coco) -> None:
    root, train, _ = coco
    train["images"][2]["width"] = 0
    rewrite(root, "train", train)
    assert data_error(root).startswith("instances_train2017.json: images[2] (id 21): width and height")
    train["images"][2]["width"] = 32
    train["categories"].append({"id": 3, "name": "again"})
    rewrite(root, "train", train)
    assert data_error(root).startswith("instances_train2017.json: categories repeat an id ([3])")


@pytest.mark.parametrize("key, path", [
    ("train_annotations", "annotations/instances_train2017.json"),
    ("eval_annotations", "annotations/instances_val2017.json"),
])
def test_missing_annotation_file_names_the_key(coco, key, path) -> None:
    root, _, _ = coco
    (root / path).unlink()
    assert data_error(root) == f"data.{key}={path}: annotation file not found: ROOT/{path}"
    assert data_error(root, f"data.{key}=other.json") == f"data.{key}=other.json: annotation file not found: " \
                                                        "ROOT/other.json"


@pytest.mark.parametrize("key, folder", [("train_images", "train2017"), ("eval_images", "val2017")])
def test_missing_image_folder_names_the_key(coco, key, folder) -> None:
    root, _, _ = coco
    shutil.rmtree(root / folder)
    assert data_error(root) == f"data.{key}={folder}: no such image folder or zip under data.root=ROOT"


def test_missing_or_bad_root(tmp_path: Path) -> None:
    assert "data.root is not set" in str(pytest.raises(DataError, build_detection_data,
                                                       detection_cfg(None), seed=0, device=CPU).value)
    assert data_error(tmp_path / "nowhere") == "data.root=ROOT: no such folder"


def test_unreadable_image_with_on_corrupt_error(coco) -> None:
    root, _, _ = coco
    (root / "train2017" / "b.png").write_bytes(b"not a png")
    message = data_error(root)
    assert message.startswith("image ROOT/train2017/b.png cannot be read")


def test_unreadable_image_found_while_streaming(coco, monkeypatch) -> None:
    """A set too large for memory is not decoded up front: the bad image is named when it is loaded."""
    root, _, _ = coco
    monkeypatch.setattr(build_module, "IN_MEMORY_BYTES", 0)
    (root / "train2017" / "b.png").write_bytes(b"not a png")
    bundle = build(root)
    with pytest.raises(DataError, match=r"^image .*train2017/b\.png cannot be read"):
        for _ in bundle.train.epoch(0):
            pass


def test_unreadable_image_with_on_corrupt_skip(coco, caplog) -> None:
    root, _, _ = coco
    (root / "train2017" / "b.png").write_bytes(b"not a png")
    (root / "train2017" / "e.png").unlink()
    with caplog.at_level(logging.WARNING, logger="kdlab.data"):
        bundle = build(root, "data.on_corrupt=skip")
    assert bundle.train_size == len(TRAIN_IMAGES) - 2
    assert [r.file for r in bundle.train.dataset.records] == ["a.png", "c.png", "d.png", "f.png"]
    message = " ".join(r.getMessage() for r in caplog.records if r.name == "kdlab.data")
    assert "skipped 2 unreadable image(s) of the train split (b.png, e.png)" in message
    seen = {int(i) for batch in bundle.train.epoch(0) for i in batch["image_id"]}
    assert seen <= {1, 21, 31, 51}


def test_image_size_differing_from_its_entry(coco) -> None:
    root, train, _ = coco
    train["images"][0]["height"] = 31
    rewrite(root, "train", train)
    assert data_error(root) == "image ROOT/train2017/a.png is 40x30, its annotation says 40x31"
    assert build(root, "data.on_corrupt=skip").train_size == len(TRAIN_IMAGES) - 1


def test_reader_errors_are_cli_user_errors(coco) -> None:
    """The CLI prints a DataError as its one line and exits 2 (see test_det_data_make for the command)."""
    from kdlab.cli.main import one_line, user_errors

    root, train, _ = coco
    train["annotations"][0]["bbox"] = [0, 0, 100, 5]
    rewrite(root, "train", train)
    with pytest.raises(DataError) as info:
        build(root)
    assert isinstance(info.value, user_errors())
    assert one_line(info.value) == \
        "instances_train2017.json: annotations[0] (id 100): bbox [0, 0, 100, 5] outside image 1 (40x30)"


def test_zip_handle_is_opened_once_per_process(coco, monkeypatch) -> None:
    """A forked DataLoader worker must not share the parent's zip handle (and its file offset)."""
    import kdlab.data.detection.containers as containers

    root, _, _ = coco
    zip_dir(root / "train2017", root / "train2017.zip")
    shutil.rmtree(root / "train2017")
    container = build(root).train.dataset.container
    parent = container.archive
    assert container.archive is parent
    monkeypatch.setattr(containers.os, "getpid", lambda: -1)  # as seen from another process
    assert container.archive is not parent
    assert container.open_rgb("a.png").size == (40, 30)


def test_corrupt_zip_member_is_a_data_error(coco) -> None:
    root, _, _ = coco
    zip_dir(root / "train2017", root / "train2017.zip", compression=zipfile.ZIP_STORED)
    shutil.rmtree(root / "train2017")
    data = bytearray((root / "train2017.zip").read_bytes())
    start = data.index(b"\x89PNG")  # the first member's bytes (a.png): flip some, the CRC no longer matches
    data[start + 40 : start + 60] = bytes(20)
    (root / "train2017.zip").write_bytes(bytes(data))
    message = data_error(root)
    assert message.startswith("image a.png in ROOT/train2017.zip cannot be read")
