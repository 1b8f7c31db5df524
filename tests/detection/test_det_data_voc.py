"""The Pascal VOC reader of ``build_detection_data`` on a tiny generated VOC folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlab.data.detection import build_detection_data
from kdlab.data.errors import DataError
from test_det_data_helpers import VOC_TEST, VOC_TRAINVAL, detection_cfg, voc_xml, write_voc

CPU = torch.device("cpu")


def build(root: Path, *overrides: str):
    return build_detection_data(detection_cfg(root, "data.batch_size=1", *overrides, name="voc"), seed=0, device=CPU)


def data_error(root: Path, *overrides: str) -> str:
    with pytest.raises(DataError) as info:
        build(root, *overrides)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(root), "ROOT")


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    return write_voc(tmp_path)


def test_classes_sorted_from_the_xmls(voc) -> None:
    bundle = build(voc)
    assert bundle.classes == ["bird", "cat", "dog"] and bundle.num_classes == 3
    assert bundle.category_ids == [1, 2, 3]
    assert bundle.train_size == 3 and bundle.eval.num_samples == 2
    assert [c["name"] for c in bundle.eval_ground_truth["categories"]] == ["bird", "cat", "dog"]


def test_one_based_boxes_become_zero_based(voc) -> None:
    bundle = build(voc)
    first = bundle.train.dataset.records[0]  # dog (3, 4, 12, 15), cat (20, 5, 35, 25), 1-based inclusive
    np.testing.assert_array_equal(first.boxes, [[2, 3, 12, 15], [19, 4, 35, 25]])
    assert first.labels.tolist() == [3, 2]
    image, target, _, _ = bundle.train.dataset[(0, None)]
    assert image.shape == (3, 30, 40)
    bright = image.mean(0) > 0.5
    # the box covers exactly the painted pixels: columns xmin-1 .. xmax-1, rows ymin-1 .. ymax-1
    for x1, y1, x2, y2 in target["boxes"].int().tolist():
        assert bright[y1:y2, x1:x2].all()
    assert int(bright.sum()) == 10 * 12 + 16 * 21
    truth = bundle.eval_ground_truth["annotations"]
    assert truth[0]["bbox"] == [1.0, 2.0, 19.0, 23.0]  # bird (2, 3, 20, 25) -> [x, y, w, h]
    assert truth[0]["area"] == 19.0 * 23.0


def test_difficult_objects(voc) -> None:
    bundle = build(voc)
    # 000002: bird, then a difficult dog
    target = bundle.train.dataset[(1, None)][1]
    assert target["labels"].tolist() == [1] and target["boxes"].tolist() == [[0.0, 0.0, 16.0, 16.0]]
    for batch in bundle.train.epoch(0):
        for target in batch["targets"]:
            assert target["boxes"].shape[0] == target["labels"].shape[0]
    seen = [t["labels"].tolist() for batch in bundle.train.epoch(0) for t in batch["targets"]]
    assert sorted(map(tuple, seen)) == [(1,), (2,), (3, 2)]  # the difficult dog is never a target
    truth = bundle.eval_ground_truth["annotations"]
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in truth] == [(1, 1, 0), (1, 2, 1), (2, 3, 0)]


def test_classes_from_config(voc) -> None:
    bundle = build(voc, "data.classes=[dog,cat,bird,horse]")
    assert bundle.classes == ["dog", "cat", "bird", "horse"] and bundle.num_classes == 4
    assert bundle.train.dataset.records[0].labels.tolist() == [1, 2]
    message = data_error(voc, "data.classes=[dog,cat]")
    assert message == "VOC annotation ROOT/Annotations/000002.xml: object name 'bird' is not in data.classes"


def test_image_found_by_filename_or_by_id(voc) -> None:
    """000002's XML names 000002.jpg (absent, the .png is used); 000003's XML has no <filename>."""
    bundle = build(voc)
    assert [r.file for r in bundle.train.dataset.records] == ["000001.png", "000002.png", "000003.png"]
    # a <filename> that exists wins, even with another name than the id
    Image.new("RGB", (40, 30)).save(voc / "JPEGImages" / "renamed.jpg")
    file, _, width, height, objects = VOC_TRAINVAL["000001"]
    (voc / "Annotations" / "000001.xml").write_text(voc_xml("renamed.jpg", width, height, objects))
    assert build(voc).train.dataset.records[0].file == "renamed.jpg"


def test_jpeg_images(tmp_path: Path) -> None:
    entries = {k: (v[0].replace(".png", ".jpg"), v[1] and v[1].replace(".png", ".jpg"), *v[2:])
               for k, v in VOC_TRAINVAL.items()}
    write_voc(tmp_path, trainval=entries)
    for image_id, (file, *_rest) in entries.items():
        png = tmp_path / "JPEGImages" / file
        Image.open(png).save(png.with_suffix(".jpg"), format="JPEG", quality=95)
    assert all(r.file.endswith(".jpg") for r in build(tmp_path).train.dataset.records)


def test_missing_xml(voc) -> None:
    (voc / "Annotations" / "000004.xml").unlink()
    assert data_error(voc) == "VOC annotation ROOT/Annotations/000004.xml not found"


@pytest.mark.parametrize("text, expected", [
    ("<annotation><size>", "VOC annotation ROOT/Annotations/000003.xml: cannot be parsed (no element found"),
    ("<annotation><object><name>cat</name></object></annotation>",
     "VOC annotation ROOT/Annotations/000003.xml: missing <width>"),
    (voc_xml(None, 36, 28, [("cat", (5, 5, "x", 20), 0)]), "VOC annotation ROOT/Annotations/000003.xml: bad <bndbox>"),
    ("<annotation><size><width>36</width><height>28</height></size><object><name>cat</name><bndbox>"
     "<xmin>1</xmin></bndbox></object></annotation>", "VOC annotation ROOT/Annotations/000003.xml: missing <ymin>"),
    (voc_xml(None, 36, 28, [("cat", (5, 5, 40, 20), 0)]),
     "VOC annotation ROOT/Annotations/000003.xml: object 'cat' has <bndbox> (5, 5, 40, 20) outside its 36x28 image"),
    (voc_xml(None, 36, 28, [("cat", (9, 5, 4, 20), 0)]),
     "VOC annotation ROOT/Annotations/000003.xml: object 'cat' has <bndbox> (9, 5, 4, 20) outside its 36x28 image "
     "or inverted"),
])
def test_bad_xml(voc, text, expected) -> None:
    (voc / "Annotations" / "000003.xml").write_text(text)
    message = data_error(voc, "data.classes=[bird,cat,dog]")
    assert message.startswith(expected) and message.count("VOC annotation") == 1


@pytest.mark.parametrize("key, split", [("train_split", "trainval"), ("eval_split", "test")])
def test_missing_split_file(voc, key, split) -> None:
    (voc / "ImageSets" / "Main" / f"{split}.txt").unlink()
    assert data_error(voc) == f"data.{key}={split}: ROOT/ImageSets/Main/{split}.txt not found"
    assert data_error(voc, "data.classes=[bird,cat,dog]") == \
        f"data.{key}={split}: ROOT/ImageSets/Main/{split}.txt not found"


def test_other_split_names(voc) -> None:
    (voc / "ImageSets" / "Main" / "val.txt").write_text("000005\n")
    bundle = build(voc, "data.eval_split=val")
    assert bundle.eval.num_samples == 1
    assert data_error(voc, "data.train_split=train") == "data.train_split=train: ROOT/ImageSets/Main/train.txt " \
                                                        "not found"


def test_missing_image_and_not_a_voc_folder(voc, tmp_path: Path) -> None:
    (voc / "JPEGImages" / "000005.png").unlink()
    assert data_error(voc) == "VOC image of 000005 not found in ROOT/JPEGImages (tried 000005.png)"
    (voc / "Annotations").rename(voc / "Notes")
    assert data_error(voc) == "data.root=ROOT is not a VOC folder: Annotations/ is missing"


def test_coco_keys_are_refused_for_voc(voc) -> None:
    assert data_error(voc, "data.train_annotations=a.json") == \
        "data.train_annotations=a.json is a data.name=coco key, not used for data.name=voc"


def test_test_split_images(voc) -> None:
    bundle = build(voc)
    truth = bundle.eval_ground_truth
    assert [(im["width"], im["height"]) for im in truth["images"]] == [(30, 30), (28, 34)]
    assert len(truth["annotations"]) == sum(len(v[4]) for v in VOC_TEST.values())


def test_fingerprint_follows_the_xmls(voc) -> None:
    first = build(voc).fingerprint
    assert build(voc).fingerprint == first
    file, filename, width, height, objects = VOC_TEST["000005"]
    (voc / "Annotations" / "000005.xml").write_text(voc_xml(filename, width, height, [("dog", (4, 4, 24, 29), 0)]))
    edited = build(voc).fingerprint
    assert edited != first
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000005\n000004\n")  # another order: other image ids
    assert build(voc).fingerprint not in (first, edited)
