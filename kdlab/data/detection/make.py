"""``make-detection``: a multi-object detection set in COCO format from a classification source.

Each canvas holds 1 to 4 whole source images (the objects) at random scales and
positions with limited overlap, pasted on a background made from real pixels: a
strongly enlarged random crop of another image of the same split, darkened so
objects stand out. Boxes are the pasted rectangles, exactly. Train canvases use
only the source's training images, test canvases only its evaluation images.
Everything follows from the seed: the same seed writes byte-identical files.

The output has the COCO 2017 layout, so ``data.name=coco data.root=OUT`` reads it
with no other key: ``train2017/``, ``val2017/``, ``annotations/instances_train2017.json``,
``annotations/instances_val2017.json``, plus ``make_detection.json`` (what made it).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image, ImageFilter

from kdlab.data.errors import DataError
from kdlab.data.seeding import derive_seed

#: placements tried per object before the canvas keeps fewer objects
PLACEMENT_TRIES = 30
#: background brightness relative to the source crop (objects keep their own contrast)
BACKGROUND_DIM = 0.6


@dataclass(frozen=True)
class MakeDetectionOptions:
    """What ``kdlab data make-detection`` writes; sizes in pixels (None: relative to the canvas)."""

    seed: int = 0
    train: int = 2000
    test: int = 500
    canvas: int = 96
    min_objects: int = 1
    max_objects: int = 4
    min_size: Optional[int] = None  # default: canvas * 20 / 96
    max_size: Optional[int] = None  # default: canvas * 56 / 96
    max_overlap: float = 0.3  # largest IoU of a new object with an earlier one

    def sizes(self) -> tuple[int, int]:
        low = self.min_size if self.min_size is not None else max(4, round(self.canvas * 20 / 96))
        high = self.max_size if self.max_size is not None else max(low, round(self.canvas * 56 / 96))
        return low, high

    def validate(self) -> None:
        low, high = self.sizes()
        checks = [
            (self.train >= 1 and self.test >= 1, f"--train and --test must be >= 1, got {self.train}, {self.test}"),
            (self.canvas >= 16, f"--canvas must be >= 16 pixels, got {self.canvas}"),
            (1 <= self.min_objects <= self.max_objects,
             f"need 1 <= --min-objects <= --max-objects, got {self.min_objects}, {self.max_objects}"),
            (2 <= low <= high <= self.canvas, f"need 2 <= --min-size <= --max-size <= --canvas, got {low}, {high}"),
            (0.0 <= self.max_overlap < 1.0, f"--max-overlap must be in [0, 1), got {self.max_overlap}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DataError(message)


def _open(source: str) -> tuple[Any, Any, list[str], str]:
    """(train split, eval split, class names, identity) of a classification source."""
    from kdlab.data.sources import open_digits, open_imagefolder

    if source == "digits":
        data = open_digits()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"make-detection SOURCE {source}: no such folder or zip (or the name digits)")
        try:
            data = open_imagefolder(str(path))
        except DataError as err:  # the reader speaks of data.root: say which command and argument it was
            raise DataError(f"make-detection SOURCE {source}: {err}") from None
    return data.train, data.eval, list(data.classes), data.fingerprint


def _rgb(split: Any, i: int) -> Image.Image:
    return split.load_pil(i).convert("RGB")


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _background(split: Any, rng: np.random.Generator, canvas: int) -> Image.Image:
    source = _rgb(split, int(rng.integers(len(split))))
    w, h = source.size
    side = max(2, int(min(w, h) * rng.uniform(0.3, 0.6)))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    crop = source.crop((x, y, x + side, y + side)).resize((canvas, canvas), Image.BILINEAR)
    crop = crop.filter(ImageFilter.GaussianBlur(radius=canvas / 48))
    return Image.fromarray((np.asarray(crop, dtype=np.float32) * BACKGROUND_DIM).astype(np.uint8))


def _canvas(split: Any, rng: np.random.Generator, options: MakeDetectionOptions) -> tuple[Image.Image, list]:
    image = _background(split, rng, options.canvas)
    low, high = options.sizes()
    placed: list[tuple[tuple[int, int, int, int], int]] = []
    wanted = int(rng.integers(options.min_objects, options.max_objects + 1))
    for _ in range(wanted):
        index = int(rng.integers(len(split)))
        side = int(rng.integers(low, high + 1))
        for _ in range(PLACEMENT_TRIES):
            x, y = int(rng.integers(0, options.canvas - side + 1)), int(rng.integers(0, options.canvas - side + 1))
            box = (x, y, x + side, y + side)
            if all(_iou(box, other) <= options.max_overlap for other, _ in placed):
                break
        else:
            continue  # no free spot: the canvas keeps fewer objects
        image.paste(_rgb(split, index).resize((side, side), Image.BILINEAR), (x, y))
        placed.append((box, int(split.labels[index])))
    return image, placed


def _write_split(split: Any, count: int, folder: Path, annotations: Path, classes: list[str],
                 options: MakeDetectionOptions, name: str) -> int:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(derive_seed("make-detection", options.seed, name))
    images, objects = [], []
    for i in range(count):
        image, placed = _canvas(split, rng, options)
        file = f"{i + 1:06d}.png"
        image.save(folder / file, format="PNG", optimize=False)
        images.append({"id": i + 1, "file_name": file, "width": options.canvas, "height": options.canvas})
        for (x1, y1, x2, y2), label in placed:
            objects.append({"id": len(objects) + 1, "image_id": i + 1, "category_id": label + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(classes)]
    annotations.parent.mkdir(parents=True, exist_ok=True)
    annotations.write_text(json.dumps({"images": images, "annotations": objects, "categories": categories}) + "\n")
    return len(objects)


def make_detection_dataset(source: str, out: str | Path, options: MakeDetectionOptions = MakeDetectionOptions(),
                           *, overwrite: bool = False) -> dict[str, Any]:
    """Write the set (see the module docstring); returns what was written."""
    options.validate()
    out = Path(out).expanduser()
    replace = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if replace and (not overwrite or not out.is_dir()):
        raise DataError(f"make-detection OUT {out} exists and is not an empty folder (pass --overwrite to replace it)")
    train, evaluation, classes, identity = _open(source)  # a bad SOURCE fails before OUT is removed
    if replace:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"source": str(source), "source_identity": identity, "options": asdict(options),
                               "classes": classes}
    for name, split, count, folder in (("train", train, options.train, "train2017"),
                                       ("test", evaluation, options.test, "val2017")):
        annotations = out / "annotations" / f"instances_{folder}.json"
        summary[f"{name}_objects"] = _write_split(split, count, out / folder, annotations, classes, options, name)
        summary[f"{name}_canvases"] = count
    (out / "make_detection.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
