"""COCO-format instances files: validated, categories mapped to contiguous labels 1..K."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kdlab.data.errors import DataError
from kdlab.data.detection.records import DetectionSplit, ImageRecord

#: how far (pixels) a box may reach beyond its image before the file is refused
BOX_TOLERANCE = 1.0


def _read_json(path: Path, key: str) -> tuple[dict[str, Any], str]:
    """The validated top level of an instances file, and the digest of its bytes (for the fingerprint)."""
    if not path.is_file():
        raise DataError(f"{key}: annotation file not found: {path}")
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path.name}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path.name}: expected a JSON object with images, annotations and categories, "
                        f"got {type(data).__name__}")
    for part in ("images", "annotations", "categories"):
        if part not in data:
            raise DataError(f'{path.name}: missing "{part}"')
        if not isinstance(data[part], list):
            raise DataError(f'{path.name}: "{part}" must be a list, got {type(data[part]).__name__}')
    return data, hashlib.blake2b(raw, digest_size=16).hexdigest()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _known(value: Any, table: dict) -> bool:
    """``value in table``, False for an unhashable value (a list where an id belongs)."""
    try:
        return value in table
    except TypeError:
        return False


def _categories(data: dict[str, Any], name: str) -> tuple[list[int], list[str]]:
    ids, names = [], []
    for i, entry in enumerate(data["categories"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or isinstance(entry.get("id"), bool):
            raise DataError(f"{name}: categories[{i}] must be an object with an integer id, got {entry!r}"[:300])
        ids.append(int(entry["id"]))
        names.append(str(entry.get("name", entry["id"])))
    if len(set(ids)) != len(ids):
        raise DataError(f"{name}: categories repeat an id ({sorted({i for i in ids if ids.count(i) > 1})[:5]})")
    if not ids:
        raise DataError(f"{name}: categories is empty")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return [ids[i] for i in order], [names[i] for i in order]


def _images(data: dict[str, Any], name: str) -> dict[int, dict[str, Any]]:
    images: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(data["images"]):
        ok = isinstance(entry, dict) and isinstance(entry.get("id"), int) and isinstance(entry.get("file_name"), str)
        if not ok:
            raise DataError(f"{name}: images[{i}] needs an integer id and a file_name, got {entry!r}"[:300])
        width, height = entry.get("width"), entry.get("height")
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise DataError(f"{name}: images[{i}] (id {entry['id']}): width and height must be positive integers, "
                            f"got {width!r} x {height!r}")
        if entry["id"] in images:
            raise DataError(f"{name}: images[{i}]: image id {entry['id']} appears twice")
        images[entry["id"]] = entry
    return images


def _same_categories(path: Path, ids: list[int], names: list[str], reference: DetectionSplit) -> None:
    """DataError naming both files unless ``reference`` (the training split) has the same (id, name) list."""
    name, other = path.name, Path(reference.source).name
    if name == other:  # one file name in two folders: only the paths tell them apart
        name, other = str(path), reference.source
    if ids != reference.category_ids:
        detail = f"category ids {ids[:10]} differ from {other}'s {reference.category_ids[:10]}"
    elif names != reference.classes:
        k = next(i for i, (a, b) in enumerate(zip(names, reference.classes)) if a != b)
        detail = f"category {ids[k]} is named {names[k]!r} but {reference.classes[k]!r} in {other}"
    else:
        return
    raise DataError(f"{name}: {detail}: the training and evaluation files must list the same categories")


def read_coco(path: Path, key: str, split: str, *, reference: Optional[DetectionSplit] = None) -> DetectionSplit:
    """Read and validate ``path``; the categories of ``reference`` (the training split) must be the same."""
    name = path.name
    data, digest = _read_json(path, key)
    category_ids, class_names = _categories(data, name)
    if reference is not None:
        _same_categories(path, category_ids, class_names, reference)
    label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}
    images = _images(data, name)
    objects: dict[int, list[tuple[list[float], int, bool, float]]] = {i: [] for i in images}
    dropped = 0
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{name}: annotations[{i}] must be an object, got {ann!r}"[:300])
        where = f"{name}: annotations[{i}] (id {ann.get('id')})"
        image_id = ann.get("image_id")
        if not _known(image_id, images):
            raise DataError(f"{where}: image_id {image_id} not in images")
        if not _known(ann.get("category_id"), label_of):
            raise DataError(f"{where}: category_id {ann.get('category_id')} not in categories")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise DataError(f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}"[:300])
        x, y, w, h = (float(v) for v in bbox)
        image = images[image_id]
        W, H = image["width"], image["height"]
        if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > W + BOX_TOLERANCE or y + h > H + BOX_TOLERANCE:
            raise DataError(f"{where}: bbox {bbox} outside image {image_id} ({W}x{H})")
        if w <= 0 or h <= 0:
            dropped += 1
            continue
        x1, y1 = max(x, 0.0), max(y, 0.0)
        box = [x1, y1, min(x + w, float(W)), min(y + h, float(H))]
        area = float(ann["area"]) if _number(ann.get("area")) else w * h
        objects[image_id].append((box, label_of[ann["category_id"]], bool(ann.get("iscrowd", 0)), area))
    records = []
    for image_id, image in images.items():
        found = objects[image_id]
        records.append(ImageRecord(
            image_id=image_id, file=image["file_name"], width=image["width"], height=image["height"],
            boxes=np.array([o[0] for o in found], np.float32).reshape(-1, 4),
            labels=np.array([o[1] for o in found], np.int64),
            crowd=np.array([o[2] for o in found], bool),
            areas=np.array([o[3] for o in found], np.float32),
        ))
    return DetectionSplit(split, records, class_names, category_ids, str(path), dropped, digest)
