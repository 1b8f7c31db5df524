"""The cache folder on disk: ``.npy`` arrays, ``meta.json`` and a ``COMPLETE`` marker.

A cache is written into a temporary sibling folder, every file flushed and
fsynced, ``meta.json`` then ``COMPLETE`` written last, and the folder renamed
into place: a reader sees either nothing or a finished cache, whatever
happens to the writer. Arrays are ``.npy`` files opened with
``numpy.load(mmap_mode="r")``, so a cache never has to fit in memory: a
training step reads only its own rows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TeacherCacheError

FORMAT = "kdlab-teacher-cache"
VERSION = 1
META_FILE = "meta.json"
COMPLETE_FILE = "COMPLETE"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_exists(path: str | Path) -> bool:
    """True when ``path`` holds a finished cache (its COMPLETE marker is there)."""
    return (Path(path) / COMPLETE_FILE).is_file()


class CacheWriter:
    """Builds a cache's files in a temporary sibling of ``path``; :meth:`commit` publishes them atomically."""

    def __init__(self, path: str | Path) -> None:
        from kdlab.checkpoint_io import check_output_folder

        # a file, device or pipe at the path would only fail the final rename, after all the work
        self.path = check_output_folder(path, "teacher cache")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self._arrays: dict[str, np.memmap] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A new zero-filled, writable, memory-mapped array ``name.npy``."""
        if name in self._arrays:
            raise ValueError(f"cache array {name!r} created twice")
        array = np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=np.dtype(dtype), shape=shape)
        self._arrays[name] = array
        return array

    def commit(self, meta: dict[str, Any]) -> bool:
        """Flush everything, write meta.json and COMPLETE, rename into place.

        Returns False (and discards this copy) when another process published a
        cache at ``path`` first; the caller then opens and checks that one.
        """
        arrays = {}
        for name, array in self._arrays.items():
            array.flush()
            arrays[name] = {"dtype": array.dtype.str, "shape": list(array.shape)}
        self._arrays.clear()  # drop the maps before the files are renamed
        for file in self.tmp.iterdir():
            _fsync_path(file)
        meta = {"format": FORMAT, "version": VERSION, **meta, "arrays": arrays}
        (self.tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        _fsync_path(self.tmp / META_FILE)
        (self.tmp / COMPLETE_FILE).write_text("complete\n")
        _fsync_path(self.tmp / COMPLETE_FILE)
        _fsync_path(self.tmp)
        try:
            os.rename(self.tmp, self.path)
        except OSError:
            if cache_exists(self.path):
                self.abort()
                return False
            self.abort()
            raise TeacherCacheError(
                f"cannot publish the teacher cache at {self.path}: something that is not a finished cache is in the "
                "way; delete it and run again"
            ) from None
        _fsync_path(self.path.parent)
        return True

    def abort(self) -> None:
        """Remove the temporary folder (after a failure or a lost race)."""
        self._arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


class CacheFiles:
    """A finished cache folder, opened read-only; arrays are memory-mapped on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise TeacherCacheError(f"teacher cache {self.path} does not exist (build it with `kdlab cache-teacher`)")
        if not cache_exists(self.path):
            raise TeacherCacheError(
                f"{self.path} is not a finished teacher cache (no {COMPLETE_FILE} marker: an interrupted build or "
                "another folder); delete it and build the cache again"
            )
        try:
            self.meta: dict[str, Any] = json.loads((self.path / META_FILE).read_text())
        except (OSError, ValueError) as err:
            raise TeacherCacheError(f"teacher cache {self.path}: unreadable {META_FILE}: {err}") from None
        if not isinstance(self.meta, dict) or not isinstance(self.meta.get("arrays", {}), dict):
            raise TeacherCacheError(f"teacher cache {self.path}: {META_FILE} is not a kdlab cache description "
                                    "(a damaged cache: build it again)")
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise TeacherCacheError(
                f"teacher cache {self.path} has format {self.meta.get('format')!r} "
                f"version {self.meta.get('version')!r}; "
                f"this kdlab reads {FORMAT!r} version {VERSION}: build it again"
            )
        self._arrays: dict[str, np.ndarray] = {}

    def has(self, name: str) -> bool:
        return name in self.meta.get("arrays", {})

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array ``name`` (checked against the shape and dtype meta.json recorded)."""
        if name not in self._arrays:
            expected = self.meta.get("arrays", {}).get(name)
            if expected is None:
                raise TeacherCacheError(f"teacher cache {self.path} has no array {name!r}")
            file = self.path / f"{name}.npy"
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
                if not isinstance(array, np.ndarray):
                    array.close()
                    raise ValueError("an .npz archive, not one array")
            except (OSError, ValueError, EOFError) as err:
                raise TeacherCacheError(f"teacher cache {self.path}: cannot read {file.name}: {err}") from None
            if not isinstance(expected, dict):
                raise TeacherCacheError(f"teacher cache {self.path}: {META_FILE} garbles array {name!r}")
            if list(array.shape) != expected.get("shape") or array.dtype.str != expected.get("dtype"):
                raise TeacherCacheError(
                    f"teacher cache {self.path}: {file.name} is {array.dtype.str} {list(array.shape)}, "
                    f"meta.json says {expected['dtype']} {expected['shape']} (a damaged cache: build it again)"
                )
            self._arrays[name] = array
        return self._arrays[name]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
