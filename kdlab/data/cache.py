"""The fast path's on-disk cache of decoded splits.

One folder per (source fingerprint, split, selection, resolution) holds
``images.npy`` (uint8 N, C, S, S), ``labels.npy``, ``kept.npy`` and, written
last, ``meta.json``. The folder is filled under a temporary name and then
renamed into place, so a run killed half-way leaves only a temporary folder,
which is never read: a cache folder either is complete or does not exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .decode import SKIPPED_SHOWN, decode_split
from .errors import DataError
from .sources.base import SplitSpec

logger = logging.getLogger("kdlab.data")

CACHE_FORMAT = 1
_FILES = ("images.npy", "labels.npy", "kept.npy")
TEMP_PREFIX = ".tmp-"


def default_cache_dir(cfg: Any = None) -> Path:
    """``data.cache_dir``, else ``$KDLAB_CACHE_DIR``, else ``~/.cache/kdlab``."""
    configured = getattr(cfg, "cache_dir", None) if cfg is not None else None
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("KDLAB_CACHE_DIR"):
        return Path(os.environ["KDLAB_CACHE_DIR"]).expanduser()
    return Path("~/.cache/kdlab").expanduser()


def selection_digest(selection: Optional[np.ndarray]) -> str:
    """Short digest of a subset's indices ('all' without a subset)."""
    if selection is None:
        return "all"
    return hashlib.blake2b(np.asarray(selection, dtype=np.int64).tobytes(), digest_size=8).hexdigest()


def split_key(source_fingerprint: str, split: str, selection: Optional[np.ndarray], size: int) -> str:
    """Cache key of one decoded split."""
    text = f"v{CACHE_FORMAT}|{source_fingerprint}|{split}|{selection_digest(selection)}|{size}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class CachedSplit:
    """A decoded split and where it came from."""

    images: np.ndarray
    labels: np.ndarray
    kept: np.ndarray
    skipped: list[str]
    path: Optional[Path]
    from_cache: bool
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return int(self.images.nbytes + self.labels.nbytes)


def _read(folder: Path) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            return None
        images, labels, kept = (np.load(folder / name, allow_pickle=False) for name in _FILES)
        if not all(isinstance(a, np.ndarray) and a.ndim >= 1 for a in (images, labels, kept)):
            raise ValueError("an array file holds no array (an .npz archive or a scalar)")
    except (OSError, ValueError, EOFError) as exc:
        logger.warning("ignoring unreadable fast-path cache %s: %s", folder, exc)
        return None
    if images.shape[0] != labels.shape[0] or images.shape[0] != kept.shape[0]:
        logger.warning("ignoring inconsistent fast-path cache %s", folder)
        return None
    return images, labels, kept, meta


def _write(folder: Path, images: np.ndarray, labels: np.ndarray, kept: np.ndarray, meta: dict) -> None:
    if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
        # a file, device, pipe or link where the cache folder goes is not ours to remove or replace
        raise OSError(f"{folder} exists and is not a cache folder; left as it is")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.parent / f"{TEMP_PREFIX}{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        for name, array in zip(_FILES, (images, labels, kept)):
            np.save(temp / name, array, allow_pickle=False)
        (temp / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():
            # Another process finished the same key first, or a stale folder
            # without meta.json (never produced by this code) is in the way.
            if _read(folder) is not None:
                return
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(temp, folder)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _check_skipped(skipped: list[str], split: str, on_corrupt: str, folder: Path) -> None:
    if not skipped:
        return
    shown = ", ".join(skipped[:SKIPPED_SHOWN]) + (" ..." if len(skipped) > SKIPPED_SHOWN else "")
    if on_corrupt != "skip":
        raise DataError(
            f"cannot decode image {skipped[0]} ({len(skipped)} undecodable in the {split} split, "
            f"recorded in {folder}); set data.on_corrupt=skip to skip them"
        )
    message = f"skipped {len(skipped)} undecodable image(s) of the {split} split: {shown}"
    logger.warning(message)
    warnings.warn(message, stacklevel=4)


def load_or_decode(
    split: SplitSpec,
    *,
    cache_root: Path,
    dataset: str,
    source_fingerprint: str,
    selection: Optional[np.ndarray],
    size: int,
    on_corrupt: str,
    progress: bool = False,
) -> CachedSplit:
    """``split`` decoded to uint8 at ``size``: from the cache when a complete entry exists, else decoded and cached."""
    key = split_key(source_fingerprint, split.name, selection, size)
    folder = Path(cache_root) / "fast" / f"{dataset}-{split.name}-{size}px-{key[:20]}"
    started = time.perf_counter()
    found = _read(folder)
    if found is not None:
        images, labels, kept, meta = found
        skipped = list(meta.get("skipped", []))
        _check_skipped(skipped, split.name, on_corrupt, folder)
        return CachedSplit(images, labels, kept, skipped, folder, True, time.perf_counter() - started)
    decoded = decode_split(split, size, on_corrupt=on_corrupt, progress=progress)
    meta = {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "split": split.name,
        "size": size,
        "samples": int(decoded.images.shape[0]),
        "source_fingerprint": source_fingerprint,
        "selection": selection_digest(selection),
        "skipped": decoded.skipped,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    try:
        _write(folder, decoded.images, decoded.labels, decoded.kept, meta)
    except OSError as exc:
        # An unwritable cache slows the next run down but must not stop this one.
        logger.warning("could not write the fast-path cache %s: %s", folder, exc)
    seconds = time.perf_counter() - started
    return CachedSplit(decoded.images, decoded.labels, decoded.kept, decoded.skipped, folder, False, seconds)


def load_or_find_undecodable(
    split: SplitSpec, *, cache_root: Path, dataset: str, source_fingerprint: str,
    selection: Optional[np.ndarray], progress: bool = False,
) -> list[int]:
    """Positions of undecodable files of ``split`` (standard path, ``on_corrupt=skip``), remembered per source."""
    from .decode import find_undecodable

    if split.files is None:
        return []
    key = split_key(source_fingerprint, split.name, selection, 0)
    path = Path(cache_root) / "verify" / f"{dataset}-{split.name}-{key[:20]}.json"
    if path.is_file():
        try:
            return [int(i) for i in json.loads(path.read_text())["undecodable"]]
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable verification record %s", path)
    bad = find_undecodable(split, progress=progress)
    try:
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            raise OSError(f"{path} exists and is not a regular file; left as it is")
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{TEMP_PREFIX}{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        temp.write_text(json.dumps({"undecodable": bad, "files": [split.describe(i) for i in bad]}))
        os.replace(temp, path)
    except OSError as exc:
        logger.warning("could not record verification result %s: %s", path, exc)
    return bad
