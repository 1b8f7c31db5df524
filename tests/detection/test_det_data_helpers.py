"""Tiny generated COCO and VOC datasets for the detection data tests (no tests in this module).

Everything is written into a test's ``tmp_path``: a few PNGs of 20-40 pixels and
their annotation files, so reading a whole dataset takes milliseconds.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from kdlab.config import load_config

#: categories of the generated COCO files: non-contiguous ids, listed out of order on purpose
CATEGORIES = [{"id": 42, "name": "zebra"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]
DARK, BRIGHT = 20, 240


def detection_cfg(root: Path | str | None, *overrides: str, name: str = "coco") -> Any:
    """The DataConfig of ``task=detection data.name=<name> data.root=<root>``, no DataLoader workers."""
    base = ["task=detection", f"data.name={name}", "data.num_workers=0"]
    if root is not None:
        base.append(f"data.root={root}")
    return load_config(None, [*base, *overrides]).data


def write_png(path: Path, width: int, height: int, *, seed: int = 0,
              rects: Sequence[tuple[int, int, int, int]] = ()) -> np.ndarray:
    """A dark noisy RGB image with bright filled ``rects`` (x1, y1, x2, y2, exclusive ends); returns its pixels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, DARK, size=(height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in rects:
        pixels[y1:y2, x1:x2] = BRIGHT
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return pixels


def image_entry(image_id: int, file: str, width: int, height: int) -> dict[str, Any]:
    return {"id": image_id, "file_name": file, "width": width, "height": height}


def ann_entry(ann_id: int, image_id: int, category_id: int, bbox: list, iscrowd: int = 0) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": float(bbox[2] * bbox[3]) if all(isinstance(v, (int, float)) for v in bbox[2:4]) else 0.0,
            "iscrowd": iscrowd}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


#: the default training split: (file, width, height, objects (category id, [x, y, w, h], iscrowd))
TRAIN_IMAGES = [
    ("a.png", 40, 30, [(3, [2, 3, 10, 8], 0), (42, [20, 10, 15, 12], 0)]),
    ("b.png", 36, 28, [(7, [5, 5, 12, 12], 0), (3, [0, 0, 30, 20], 1)]),  # the second: a crowd box
    ("c.png", 32, 32, []),  # no objects at all
    ("d.png", 40, 24, [(42, [4, 4, 0, 6], 0), (7, [10, 2, 20, 18], 0)]),  # the first: zero width
    ("e.png", 28, 36, [(3, [1, 2, 25, 30], 0)]),
    ("f.png", 30, 30, [(7, [3, 3, 9, 9], 0), (42, [15, 15, 12, 12], 0), (3, [2, 18, 8, 10], 0)]),
]
EVAL_IMAGES = [
    ("v1.png", 32, 24, [(7, [3, 4, 10, 10], 0), (42, [15, 2, 14, 20], 1)]),  # the second: crowd
    ("v2.png", 24, 32, [(3, [2, 2, 18, 26], 0)]),
    ("v3.png", 30, 30, []),
]


def write_coco_split(image_dir: Path, annotation_file: Path, images: Sequence[tuple], *, first_id: int = 1,
                     categories: Optional[list] = None, seed: int = 0) -> dict[str, Any]:
    """Write the PNGs (bright where the non-crowd boxes are) and the instances JSON of ``images``."""
    data: dict[str, Any] = {"images": [], "annotations": [], "categories": copy.deepcopy(categories or CATEGORIES)}
    for k, (file, width, height, objects) in enumerate(images):
        image_id = first_id + 10 * k  # not positions: the reader must keep the file's ids
        rects = [(int(b[0]), int(b[1]), int(b[0] + b[2]), int(b[1] + b[3])) for _, b, crowd in objects if not crowd]
        write_png(image_dir / file, width, height, seed=seed + k, rects=rects)
        data["images"].append(image_entry(image_id, file, width, height))
        for category, bbox, crowd in objects:
            data["annotations"].append(ann_entry(100 + len(data["annotations"]), image_id, category, bbox, crowd))
    write_json(annotation_file, data)
    return data


def write_coco(root: Path, *, train: Sequence[tuple] = TRAIN_IMAGES, evaluation: Sequence[tuple] = EVAL_IMAGES,
               train_images: str = "train2017", eval_images: str = "val2017",
               train_annotations: str = "annotations/instances_train2017.json",
               eval_annotations: str = "annotations/instances_val2017.json") -> tuple[dict, dict]:
    """A COCO dataset under ``root`` (by default in the COCO 2017 layout); returns the two JSON dicts."""
    train_data = write_coco_split(root / train_images, root / train_annotations, train, first_id=1)
    eval_data = write_coco_split(root / eval_images, root / eval_annotations, evaluation, first_id=5001, seed=50)
    return train_data, eval_data


def many_images(count: int, *, width: int = 24, height: int = 20) -> list[tuple]:
    """``count`` images with one or two boxes each, varied sizes (for stream tests)."""
    out = []
    for i in range(count):
        w, h = width + (i % 3) * 4, height + (i % 2) * 4
        objects = [(CATEGORIES[i % 3]["id"], [1 + i % 5, 2, 8 + i % 4, 9], 0)]
        if i % 2:
            objects.append((CATEGORIES[(i + 1) % 3]["id"], [w - 9, h - 8, 7, 6], 0))
        out.append((f"img{i:03d}.png", w, h, objects))
    return out


def zip_dir(folder: Path, zip_path: Path, *, under: str = "", compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(zip_path, "w", compression=compression) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{under}{path.relative_to(folder).as_posix()}")
    return zip_path


# ---------------------------------------------------------------------------------------------------- VOC

def voc_xml(filename: Optional[str], width: int, height: int, objects: Sequence[tuple]) -> str:
    """An annotation XML; objects are (name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    parts = ["<annotation>", "<folder>VOC</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    parts.append("</annotation>")
    return "\n".join(parts)


#: id -> (image file written, <filename> in the XML, width, height, objects)
VOC_TRAINVAL = {
    "000001": ("000001.png", "000001.png", 40, 30, [("dog", (3, 4, 12, 15), 0), ("cat", (20, 5, 35, 25), 0)]),
    # the XML names a .jpg that does not exist: the reader finds the image by its id (a .png)
    "000002": ("000002.png", "000002.jpg", 32, 32, [("bird", (1, 1, 16, 16), 0), ("dog", (18, 18, 30, 30), 1)]),
    "000003": ("000003.png", None, 36, 28, [("cat", (5, 5, 20, 20), 0)]),
}
VOC_TEST = {
    "000004": ("000004.png", "000004.png", 30, 30, [("bird", (2, 3, 20, 25), 0), ("cat", (22, 2, 29, 9), 1)]),
    "000005": ("000005.png", "000005.png", 28, 34, [("dog", (4, 4, 24, 30), 0)]),
}


def write_voc(root: Path, trainval: dict = VOC_TRAINVAL, test: dict = VOC_TEST) -> Path:
    """A VOC folder: JPEGImages/, Annotations/*.xml, ImageSets/Main/{trainval,test}.txt."""
    for split, entries in (("trainval", trainval), ("test", test)):
        for k, (image_id, (file, filename, width, height, objects)) in enumerate(entries.items()):
            rects = [(x1 - 1, y1 - 1, x2, y2) for _, (x1, y1, x2, y2), difficult in objects if not difficult]
            write_png(root / "JPEGImages" / file, width, height, seed=k, rects=rects)
            xml = root / "Annotations" / f"{image_id}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(voc_xml(filename, width, height, objects))
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("".join(f"{i}\n" for i in entries))
    return root


# ---------------------------------------------------------------------------------------------------- sources

#: ImageFolder source of the make-detection tests: every image one solid colour, by split and class;
#: train colours have no blue, test colours full blue, so a pasted pixel tells its split and class
SOURCE_COLOURS = {
    "train": {"ant": (250, 10, 0), "bee": (10, 250, 0), "cow": (250, 250, 0)},
    "test": {"ant": (250, 10, 255), "bee": (10, 250, 255), "cow": (250, 250, 255)},
}


def write_solid_imagefolder(root: Path, per_class: int = 3) -> Path:
    for split, colours in SOURCE_COLOURS.items():
        for cls, colour in colours.items():
            for i in range(per_class):
                path = root / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                size = (10 + 2 * i, 12 + i)
                Image.new("RGB", size, colour).save(path, format="PNG")
    return root


def batches_equal(a: dict, b: dict) -> bool:
    """Two detection batches hold the same images, targets, positions and image ids."""
    import torch

    if not (torch.equal(a["index"], b["index"]) and torch.equal(a["image_id"], b["image_id"])):
        return False
    if len(a["images"]) != len(b["images"]):
        return False
    for x, y in zip(a["images"], b["images"]):
        if x.shape != y.shape or not torch.equal(x, y):
            return False
    for s, t in zip(a["targets"], b["targets"]):
        if not (torch.equal(s["boxes"], t["boxes"]) and torch.equal(s["labels"], t["labels"])):
            return False
    return True
