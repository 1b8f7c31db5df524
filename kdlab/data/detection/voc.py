"""Pascal VOC: ``JPEGImages/``, ``Annotations/*.xml``, ``ImageSets/Main/<split>.txt``.

VOC boxes are 1-based inclusive pixel coordinates; they become 0-based xyxy as
``(xmin - 1, ymin - 1, xmax, ymax)``. ``<difficult>1</difficult>`` objects are
not trained on and are marked crowd in the evaluation ground truth, so COCO mAP
ignores them (the usual COCO-style treatment of VOC's difficult flag).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kdlab.data.errors import DataError
from kdlab.data.detection.coco import BOX_TOLERANCE
from kdlab.data.detection.containers import IMAGE_SUFFIXES
from kdlab.data.detection.records import DetectionSplit, ImageRecord


def _split_file(root: Path, split: str, key: str) -> Path:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"{key}={split}: {path} not found")
    return path


def split_ids(root: Path, split: str, key: str) -> list[str]:
    """The image ids of ``ImageSets/Main/<split>.txt`` (first column; VOC's per-class files have a second)."""
    path = _split_file(root, split, key)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{key}={split}: {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _parse(path: Path, digest: Optional[Any] = None) -> ET.Element:
    """The XML's root element; its bytes also go into ``digest`` (the dataset fingerprint) when given."""
    if not path.is_file():
        raise DataError(f"VOC annotation {path} not found")
    try:
        raw = path.read_bytes()
        if digest is not None:
            digest.update(raw)
        return ET.fromstring(raw)
    except (ET.ParseError, OSError) as err:
        raise DataError(f"VOC annotation {path}: cannot be parsed ({err})") from None


def _text(node: Optional[ET.Element], path: Path, what: str) -> str:
    if node is None or node.text is None:
        raise DataError(f"VOC annotation {path}: missing <{what}>")
    return node.text.strip()


def class_names(root: Path, ids: list[str]) -> list[str]:
    """Sorted object names found in the XMLs of ``ids``."""
    names = set()
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        for obj in _parse(xml).iter("object"):
            names.add(_text(obj.find("name"), xml, "name"))
    return sorted(names)


def _image_file(root: Path, image_id: str, filename: Optional[str]) -> str:
    folder = root / "JPEGImages"
    if filename and (folder / filename).is_file():
        return filename
    for suffix in IMAGE_SUFFIXES:
        for candidate in (image_id + suffix, image_id + suffix.upper()):
            if (folder / candidate).is_file():
                return candidate
    raise DataError(f"VOC image of {image_id} not found in {folder} (tried {filename or image_id + '.*'})")


def read_voc(root: Path, split: str, key: str, classes: list[str]) -> DetectionSplit:
    """The split's images in split-file order (image ids 1..N), labels 1..K in the order of ``classes``."""
    label_of = {name: i + 1 for i, name in enumerate(classes)}
    records = []
    digest = hashlib.blake2b(_split_file(root, split, key).read_bytes(), digest_size=16)
    for position, image_id in enumerate(split_ids(root, split, key)):
        xml = root / "Annotations" / f"{image_id}.xml"
        node = _parse(xml, digest)
        size = node.find("size")
        try:
            width = int(float(_text(size.find("width") if size is not None else None, xml, "width")))
            height = int(float(_text(size.find("height") if size is not None else None, xml, "height")))
        except DataError:  # a missing element (DataError is a ValueError): its own message
            raise
        except ValueError as err:
            raise DataError(f"VOC annotation {xml}: bad <size> ({err})") from None
        boxes, labels, crowd = [], [], []
        for obj in node.iter("object"):
            name = _text(obj.find("name"), xml, "name")
            if name not in label_of:
                raise DataError(f"VOC annotation {xml}: object name {name!r} is not in data.classes")
            bnd = obj.find("bndbox")
            try:
                x1, y1, x2, y2 = (float(_text(bnd.find(k) if bnd is not None else None, xml, k))
                                  for k in ("xmin", "ymin", "xmax", "ymax"))
            except DataError:  # a missing element (DataError is a ValueError): its own message
                raise
            except ValueError as err:
                raise DataError(f"VOC annotation {xml}: bad <bndbox> ({err})") from None
            if not (x1 <= x2 and y1 <= y2 and x1 >= 1 - BOX_TOLERANCE and y1 >= 1 - BOX_TOLERANCE
                    and x2 <= width + BOX_TOLERANCE and y2 <= height + BOX_TOLERANCE):
                raise DataError(f"VOC annotation {xml}: object {name!r} has <bndbox> ({x1:g}, {y1:g}, {x2:g}, {y2:g}) "
                                f"outside its {width}x{height} image or inverted (1-based, xmin <= xmax, ymin <= ymax)")
            boxes.append([max(x1 - 1.0, 0.0), max(y1 - 1.0, 0.0), min(x2, float(width)), min(y2, float(height))])
            labels.append(label_of[name])
            difficult = obj.find("difficult")
            crowd.append(difficult is not None and (difficult.text or "0").strip() == "1")
        filename = node.find("filename")
        file = _image_file(root, image_id, filename.text.strip() if filename is not None and filename.text else None)
        box_array = np.array(boxes, np.float32).reshape(-1, 4)
        areas = (box_array[:, 2] - box_array[:, 0]) * (box_array[:, 3] - box_array[:, 1])
        records.append(ImageRecord(position + 1, file, width, height, box_array, np.array(labels, np.int64),
                                   np.array(crowd, bool), areas.astype(np.float32)))
    return DetectionSplit(split, records, list(classes), list(range(1, len(classes) + 1)),
                          str(_split_file(root, split, key)), content_digest=digest.hexdigest())
