"""ImageFolder layout (``train/<class>/*`` and ``val/<class>/*`` or ``test/``) in a folder or a zip.

Listing reads only directory entries (or the zip's central directory), never
image bytes, so counting a large dataset is cheap. Folder links are followed, each
real folder once per class; a link back to a folder above it (a loop) is skipped
with a warning. A file link to nothing (``x.jpg -> missing``) is listed like any
image and fails to read: ``data.on_corrupt=skip`` skips it like an undecodable
image, otherwise the data layer stops with one line naming it.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from ..imageio import IMAGE_EXTENSIONS, FileTable, file_stamp
from .base import IMAGENET_MEAN, IMAGENET_STD, DatasetSource, SplitSpec

logger = logging.getLogger("kdlab.data")

EVAL_SPLITS = ("val", "test")
_LAYOUT_HINT = "train/<class>/<image> and val/<class>/<image> (or test/)"


def _is_junk(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class FolderListing:
    """Image members per split and class; names are relative to ``container``."""

    container: Path
    is_zip: bool
    prefix: str
    splits: dict[str, dict[str, list[str]]]
    stamp: tuple = ()

    @property
    def eval_split(self) -> str:
        for split in EVAL_SPLITS:
            if split in self.splits:
                return split
        raise AssertionError("listing without an eval split")

    def where(self, split: str, cls: str | None = None) -> str:
        inner = f"{self.prefix}{split}/" + (f"{cls}/" if cls else "")
        return f"{inner} in {self.container}" if self.is_zip else str(self.container / inner)


def _group(relative_names: list[tuple[str, str]], prefix: str) -> dict[str, dict[str, list[str]]]:
    """Group (path-below-prefix, container-relative name) pairs into split -> class -> image names.

    Paths ending in "/" are folder entries: they make a class exist (so an
    empty class folder is noticed) without adding an image.
    """
    splits: dict[str, dict[str, list[str]]] = {}
    for below, name in relative_names:
        parts = below.rstrip("/").split("/")
        if len(parts) < 2 or parts[0] not in ("train",) + EVAL_SPLITS or any(_is_junk(p) for p in parts):
            continue
        classes = splits.setdefault(parts[0], {})
        images = classes.setdefault(parts[1], [])
        if not below.endswith("/") and len(parts) >= 3 and _is_image(below):
            images.append(name)
    for classes in splits.values():
        for images in classes.values():
            images.sort()
    return splits


def _list_zip(path: Path) -> FolderListing:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"data.root={path} is not a readable zip file: {exc}") from exc
    tops = sorted({n.split("/", 1)[0] for n in names if "/" in n and not _is_junk(n.split("/", 1)[0])})
    if "train" in tops:
        prefix = ""
    elif len(tops) == 1 and any(n.startswith(f"{tops[0]}/train/") for n in names):
        prefix = f"{tops[0]}/"
    else:
        raise DataError(
            f"zip {path} lacks the ImageFolder layout: expected {_LAYOUT_HINT} at its top level or under one "
            f"top-level folder; found top-level entries {tops[:10]}"
        )
    pairs = [(n[len(prefix):], n) for n in names if n.startswith(prefix)]
    return FolderListing(path, True, prefix, _group(pairs, prefix), file_stamp(path))


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_class(class_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """``(folder, file names)`` of every folder below ``class_dir``, following folder links safely.

    A linked folder is listed at most once per real folder (resolved paths are tracked), and a link
    that leads back to a folder above it (``train/cat/loop -> ..``) is skipped with a warning naming
    it: followed, it would list the same images again at every level until the OS gives up (40
    levels). Sub-folders are visited in name order, so which name lists a folder is reproducible.
    """
    visited = {os.path.realpath(class_dir)}
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        here = os.path.realpath(dirpath)
        kept = []
        for name in sorted(d for d in dirnames if not _is_junk(d)):
            full = os.path.join(dirpath, name)
            target = os.path.realpath(full)
            if _inside(here, target):
                _warn(f"skipped the folder link {full} -> {target}: it leads back to a folder above it (a loop)")
                continue
            if target in visited:
                if os.path.islink(full):
                    _warn(f"skipped the folder link {full} -> {target}: that folder is listed already")
                continue
            visited.add(target)
            kept.append(name)
        dirnames[:] = kept
        yield dirpath, filenames


def _warn(message: str) -> None:
    logger.warning(message)
    warnings.warn(message, stacklevel=3)


def _list_dir(path: Path) -> FolderListing:
    if (path / "train").is_dir():
        prefix = ""
    else:
        subdirs = [p for p in sorted(path.iterdir()) if p.is_dir() and not _is_junk(p.name)]
        if len(subdirs) == 1 and (subdirs[0] / "train").is_dir():
            prefix = f"{subdirs[0].name}/"
        else:
            raise DataError(
                f"folder {path} lacks the ImageFolder layout: expected {_LAYOUT_HINT} in it or in its one "
                f"sub-folder; found {[p.name for p in subdirs][:10]}"
            )
    pairs: list[tuple[str, str]] = []
    base = path / prefix if prefix else path
    for split in ("train",) + EVAL_SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            pairs.append((f"{split}/{class_dir.name}/", f"{prefix}{split}/{class_dir.name}/"))
            for dirpath, filenames in _walk_class(class_dir):
                rel_dir = Path(dirpath).relative_to(base).as_posix()
                for file_name in filenames:
                    pairs.append((f"{rel_dir}/{file_name}", f"{prefix}{rel_dir}/{file_name}"))
    return FolderListing(path, False, prefix, _group(pairs, prefix))


def list_imagefolder(root: str | None) -> FolderListing:
    """List an ImageFolder dataset at ``root`` (folder or .zip) and check its layout."""
    if root is None:
        raise DataError(f"data.root is required for data.name=imagefolder (a folder or .zip with {_LAYOUT_HINT})")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data.root={root} does not exist (expected a folder or .zip with {_LAYOUT_HINT})")
    listing = _list_zip(path) if path.is_file() else _list_dir(path)
    if "train" not in listing.splits or not listing.splits["train"]:
        raise DataError(f"no class folders in {listing.where('train')} (expected {_LAYOUT_HINT})")
    if not any(split in listing.splits for split in EVAL_SPLITS):
        raise DataError(
            f"no val/ or test/ split next to {listing.where('train')} (expected {_LAYOUT_HINT})"
        )
    eval_split = listing.eval_split
    for split in ("train", eval_split):
        for cls, images in listing.splits[split].items():
            if not images:
                raise DataError(
                    f"class folder {listing.where(split, cls)} holds no images "
                    f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)})"
                )
    train_classes, eval_classes = set(listing.splits["train"]), set(listing.splits[eval_split])
    if train_classes != eval_classes:
        raise DataError(
            f"class folders of train/ and {eval_split}/ differ in {listing.container}: "
            f"only in train: {sorted(train_classes - eval_classes)}, "
            f"only in {eval_split}: {sorted(eval_classes - train_classes)}"
        )
    return listing


def _split_spec(listing: FolderListing, split: str, classes: list[str]) -> SplitSpec:
    names: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        members = listing.splits[split][cls]
        names.extend(members)
        labels.extend([label] * len(members))
    table = FileTable(listing.container, listing.is_zip, tuple(names), listing.stamp)
    return SplitSpec(split, np.asarray(labels, dtype=np.int64), files=table)


def open_imagefolder(root: str | None) -> DatasetSource:
    """An ImageFolder dataset (RGB, ImageNet statistics); its image size is unknown until decoded."""
    listing = list_imagefolder(root)
    classes = sorted(listing.splits["train"])
    train = _split_spec(listing, "train", classes)
    evaluation = _split_spec(listing, listing.eval_split, classes)

    def identity() -> str:
        assert train.files is not None and evaluation.files is not None
        return f"{train.files.fingerprint()}|{evaluation.files.fingerprint()}"

    return DatasetSource(
        name="imagefolder",
        root=str(listing.container),
        classes=classes,
        in_chans=3,
        native_size=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        train=train,
        eval=evaluation,
        identity=identity,
    )
