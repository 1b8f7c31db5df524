"""Image folders and zips of a detection dataset: list members, read one image's bytes."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Optional

from PIL import Image

from kdlab.data.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageContainer:
    """A folder of images, or a zip holding them (at its top level or under one folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_zip = path.is_file() and zipfile.is_zipfile(path)
        if not self.is_zip and not path.is_dir():
            raise DataError(f"{path}: neither an image folder nor a zip")
        self._zip: Optional[zipfile.ZipFile] = None
        self._zip_pid: Optional[int] = None
        self._prefix = ""
        if self.is_zip:
            names = self.archive.namelist()
            top = {n.split("/", 1)[0] for n in names if "/" in n}
            if len(top) == 1 and not any("/" not in n for n in names if not n.endswith("/")):
                self._prefix = next(iter(top)) + "/"

    @property
    def archive(self) -> zipfile.ZipFile:
        # one handle per process: a forked DataLoader worker must not share the parent's file offset
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def __getstate__(self) -> dict:  # a zip handle does not cross into DataLoader workers
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    def exists(self, name: str) -> bool:
        if self.is_zip:
            try:
                self.archive.getinfo(self._prefix + name)
                return True
            except KeyError:
                return False
        return (self.path / name).is_file()

    def describe(self, name: str) -> str:
        return f"{name} in {self.path}" if self.is_zip else str(self.path / name)

    def open_rgb(self, name: str) -> Image.Image:
        """The image as RGB; DataError naming the file when it cannot be read."""
        try:
            if self.is_zip:
                data = self.archive.read(self._prefix + name)
                image = Image.open(io.BytesIO(data))
            else:
                image = Image.open(self.path / name)
            image.load()
            return image.convert("RGB")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, Image.DecompressionBombError) as err:
            raise DataError(f"image {self.describe(name)} cannot be read: {err}") from None


def find_container(root: Path, relative: str, key: str) -> ImageContainer:
    """``root/relative`` as a folder, else ``root/relative.zip``, else DataError naming ``key``."""
    path = root / relative
    if path.is_dir() or path.is_file():
        return ImageContainer(path)
    zipped = path.with_name(path.name + ".zip")
    if zipped.is_file():
        return ImageContainer(zipped)
    raise DataError(f"{key}={relative}: no such image folder or zip under data.root={root}")
