"""Reading encoded images from a folder or a zip, and decoding them with PIL.

Zip handles are opened lazily once per process (keyed by pid), so a table can
be shared with forked DataLoader or decode workers without sharing a file
offset between processes.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_open_zips: dict[tuple, zipfile.ZipFile] = {}


def _zip_handle(path: Path, stamp: tuple) -> zipfile.ZipFile:
    """This process's handle on the zip as it was listed (``stamp``); a replaced zip gets a new handle."""
    key = (str(path), os.getpid(), stamp)
    handle = _open_zips.get(key)
    if handle is None:
        for stale in [k for k in _open_zips if k[0] == key[0] and k[1:] != key[1:]]:
            old = _open_zips.pop(stale)
            if stale[1] == key[1]:
                old.close()  # only close our own process's handles
        handle = zipfile.ZipFile(path)
        _open_zips[key] = handle
    return handle


def file_stamp(path: Path) -> tuple[int, int, int]:
    """(inode, size, mtime_ns): changes when the file is replaced or rewritten."""
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class FileTable:
    """Encoded image files of one split: members of a zip, or paths relative to a folder."""

    container: Path
    is_zip: bool
    names: tuple[str, ...]
    stamp: tuple = ()  # file_stamp of the zip when listed

    def __len__(self) -> int:
        return len(self.names)

    def select(self, indices: Sequence[int] | np.ndarray) -> "FileTable":
        return FileTable(self.container, self.is_zip, tuple(self.names[int(i)] for i in indices), self.stamp)

    def describe(self, i: int) -> str:
        """Where file i lives, for error messages."""
        if self.is_zip:
            return f"{self.names[i]} in {self.container}"
        return str(self.container / self.names[i])

    def read_bytes(self, i: int) -> bytes:
        try:
            if self.is_zip:
                return _zip_handle(self.container, self.stamp).read(self.names[i])
            return (self.container / self.names[i]).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            path = self.container / self.names[i]
            if not self.is_zip and path.is_symlink() and not path.exists():
                raise DataError(f"cannot read image file {self.describe(i)}: a symbolic link to a missing file "
                                f"({os.readlink(path)}) (set data.on_corrupt=skip to skip unreadable files)") from exc
            raise DataError(f"cannot read image file {self.describe(i)}: {exc}") from exc

    def load(self, i: int) -> Image.Image:
        """Image i decoded to RGB; DataError naming the file when it cannot be decoded."""
        return decode_image(self.read_bytes(i), self.describe(i))

    def fingerprint(self) -> str:
        """Changes when the files change: the zip's path/size/mtime, or each file's size/mtime in a folder."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(str(self.container.resolve()).encode())
        if self.is_zip:
            stat = self.container.stat()
            digest.update(f"zip|{stat.st_size}|{stat.st_mtime_ns}|{len(self.names)}".encode())
            for name in self.names:
                digest.update(name.encode() + b"\0")
        else:
            for name in self.names:
                try:
                    stat = (self.container / name).stat()
                except OSError:  # a dangling link or a loop: decoding treats it as a broken image (on_corrupt)
                    digest.update(f"{name}|unreadable\0".encode())
                    continue
                digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\0".encode())
        return digest.hexdigest()


def decode_image(data: bytes, what: str) -> Image.Image:
    """Fully decode encoded image bytes to an RGB PIL image (truncation included), naming ``what`` on failure."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise DataError(
            f"cannot decode image {what}: {type(exc).__name__}: {exc} "
            "(set data.on_corrupt=skip to skip undecodable files)"
        ) from exc


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """``image`` as size x size: unchanged if it already is, else shorter side resized to ``size``, centre-cropped."""
    width, height = image.size
    if width == size and height == size:
        return image
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def pil_to_chw(image: Image.Image) -> np.ndarray:
    """A PIL image as a uint8 (C, H, W) array."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def chw_to_pil(array: np.ndarray) -> Image.Image:
    """A uint8 (C, H, W) array (C = 1 or 3) as a PIL image (mode L or RGB)."""
    if array.shape[0] == 1:
        return Image.fromarray(array[0])
    return Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)))
