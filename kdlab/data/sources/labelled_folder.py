"""Evaluation-only image sets: a folder of class folders, and the released robustness sets.

* **Class folders** (ImageNet-v2, ImageNet-Sketch, any ``DIR/<class>/<image>``): each class
  folder is named after a class of the model (``n01440764`` or ``airplane``) or, as ImageNet-v2
  names them, by the class index (``0`` ... ``999``, the position in the sorted class list).
* **ImageNet-C** style trees: ``DIR/<corruption>/<severity>/<class>/<image>``.
* **CIFAR-10-C / CIFAR-100-C** style ``.npy`` releases: ``DIR/labels.npy`` and
  ``DIR/<corruption>.npy`` of shape (5 x N, H, W, 3) uint8, the five severities stacked in
  order 1..5. Read with ``allow_pickle=False``: nothing in a data file can run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import DataError
from ..imageio import IMAGE_EXTENSIONS, FileTable
from .base import SplitSpec


def _images_in(folder: Path) -> list[str]:
    return sorted(
        str(path.relative_to(folder)) for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def class_index(folder_name: str, classes: Sequence[str], where: Path) -> int:
    """The label of a class folder: its name among ``classes``, else its name read as an index."""
    if folder_name in classes:
        return list(classes).index(folder_name)
    if folder_name.isdigit() and int(folder_name) < len(classes):
        return int(folder_name)
    raise DataError(
        f"class folder {where / folder_name} names no class of the model ({len(classes)} classes, e.g. "
        f"{', '.join(list(classes)[:3])}) and is not a class index below {len(classes)}"
    )


def open_class_folders(root: str | Path, classes: Sequence[str]) -> SplitSpec:
    """Every image under ``root/<class>/`` labelled by its class folder (see :func:`class_index`)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{root}: no such folder (expected class folders: {root}/<class>/<image>)")
    folders = sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not folders:
        raise DataError(f"{root} holds no class folders (expected {root}/<class>/<image>)")
    names: list[str] = []
    labels: list[int] = []
    for folder in folders:
        label = class_index(folder.name, classes, path)
        members = _images_in(folder)
        names.extend(f"{folder.name}/{member}" for member in members)
        labels.extend([label] * len(members))
    if not names:
        raise DataError(f"{root}: its class folders hold no images (files ending in {', '.join(IMAGE_EXTENSIONS)})")
    return SplitSpec(path.name, np.asarray(labels, dtype=np.int64), files=FileTable(path, False, tuple(names)))


@dataclass(frozen=True)
class CorruptionCell:
    """One corruption at one severity of a released set: its images (a split) to score."""

    corruption: str
    severity: int
    split: SplitSpec


def _npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a readable .npy array ({detail})") from None
    if not isinstance(array, np.ndarray):  # a .npz archive: np.load returns a lazy dict of arrays
        array.close()
        raise DataError(f"{path}: an .npz archive, not one .npy array")
    return array


def _npy_cells(root: Path, names: Optional[Sequence[str]], severities: Sequence[int]) -> list[CorruptionCell]:
    labels = _npy(root / "labels.npy")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{root / 'labels.npy'}: expected a 1-D array of integer class indices, got {labels.dtype} "
                        f"{tuple(labels.shape)}")
    files = sorted(p for p in root.glob("*.npy") if p.name != "labels.npy")
    cells = []
    for file in files:
        name = file.stem
        if names is not None and name not in names:
            continue
        images = _npy(file)
        if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
            raise DataError(f"{file}: expected uint8 images of shape (5 x N, H, W, 3), got {images.dtype} "
                            f"{tuple(images.shape)}")
        per_severity = images.shape[0] // 5
        if per_severity * 5 != images.shape[0] or labels.shape[0] not in (per_severity, images.shape[0]):
            raise DataError(f"{file}: {images.shape[0]} images are not 5 severities of the {labels.shape[0]} "
                            f"labels in {root / 'labels.npy'}")
        for severity in severities:
            rows = slice((severity - 1) * per_severity, severity * per_severity)
            cell_labels = labels[rows] if labels.shape[0] == images.shape[0] else labels
            arrays = np.ascontiguousarray(np.moveaxis(images[rows], -1, 1))
            cells.append(CorruptionCell(name, severity, SplitSpec(f"{name}-{severity}", cell_labels, arrays=arrays)))
    return cells


def _tree_cells(root: Path, names: Optional[Sequence[str]], severities: Sequence[int],
                classes: Sequence[str]) -> list[CorruptionCell]:
    cells = []
    for corruption in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if names is not None and corruption.name not in names:
            continue
        for severity in severities:
            folder = corruption / str(severity)
            if folder.is_dir():
                cells.append(CorruptionCell(corruption.name, severity, open_class_folders(folder, classes)))
    return cells


def open_corruption_set(root: str | Path, classes: Sequence[str], *, names: Optional[Sequence[str]] = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5)) -> list[CorruptionCell]:
    """The (corruption, severity) cells of a released set at ``root`` (``.npy`` or folder layout).

    ``names`` keeps only those corruptions (None: every one found); a requested corruption that
    the set does not hold is an error naming it.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{root}: no such folder (a CIFAR-10-C style folder of .npy files or an "
                        "ImageNet-C style tree <corruption>/<severity>/<class>/)")
    cells = (_npy_cells(path, names, severities) if (path / "labels.npy").is_file()
             else _tree_cells(path, names, severities, classes))
    if not cells:
        raise DataError(f"{root}: no corruption found at severities {list(severities)} (expected labels.npy and "
                        "<corruption>.npy, or <corruption>/<severity>/<class>/ folders)")
    missing = sorted(set(names or ()) - {cell.corruption for cell in cells})
    if missing:
        raise DataError(f"{root} holds no {', '.join(missing)}")
    return cells
