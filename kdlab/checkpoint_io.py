"""Checkpoint files: written atomically, read safely (``weights_only=True``), hashed.

A neutral module (it imports nothing of kdlab): the engine's checkpoints, the
methods' artefacts (SSKD heads, MoCo teachers) and the caches all write and
read files through it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not what was expected."""


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A write interrupted at any point leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_copy(src: PathLike, dst: PathLike) -> Path:
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: PathLike) -> str:
    """sha256 of a file's bytes (teacher identities key caches and heads), remembered per (path, size, mtime)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with resolved.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


class UnsafeCheckpointError(CheckpointError):
    """The file is a real torch file holding pickled Python objects beyond tensors: ``--unsafe-load`` opts in."""


#: a torch >= 1.6 file is a zip archive; an older one a pickle (protocol 2..5)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = {bytes([0x80, n]) for n in range(2, 6)}


def describe_object(obj: Any) -> str:
    """What a loaded object is, for messages: "a Tensor of shape (3, 4)", "a list of 2 items", ..."""
    if isinstance(obj, torch.Tensor):
        return f"a Tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        if not obj:
            return "an empty dict"
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        keys = ", ".join(repr(k) for k in list(obj)[:4]) + (", ..." if len(obj) > 4 else "")
        return f"a dict of {len(obj)} entries ({tensors} tensors; keys {keys})"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


def _file_kind(path: Path) -> str:
    """"zip" (a torch archive), "pickle" (a legacy torch file) or a phrase saying what the file is instead."""
    import zipfile

    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return "a truncated or corrupt torch archive (a zip that does not open)"
        if not any(name.endswith("data.pkl") for name in names):
            return "a zip archive that is not a torch file (no data.pkl)"
        return "zip"
    if head[:2] in _PICKLE_PROTOCOLS:
        return "pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file, not a torch checkpoint"
    return f"not a torch file (it starts with {head[:8]!r})"


def torch_load_checked(path: PathLike, *, unsafe: bool = False, what: str = "checkpoint") -> Any:
    """``torch.load`` on the CPU (``weights_only`` unless ``unsafe``) with every failure one :class:`CheckpointError`.

    The file is classified first: missing, a folder, empty, a truncated or corrupt torch archive, a
    zip or other file that is no torch file at all. Only a real torch file whose pickle names
    objects beyond tensors raises :class:`UnsafeCheckpointError` with the ``--unsafe-load`` hint:
    opting out of the safe load is never the advice for a file that is not a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes)")
    kind = _file_kind(path)
    if kind not in ("zip", "pickle"):
        raise CheckpointError(f"{what} {path} is {kind}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe)
    except pickle.UnpicklingError as err:
        refused = _refused_object(err)
        if "Unsupported global" in str(err) or refused.startswith("it needs"):
            raise UnsafeCheckpointError(
                f"{what} {path} holds pickled Python objects that a safe load (weights_only=True) refuses "
                f"({refused}). Loading it would run code from the file: only if you trust it, opt in with "
                "--unsafe-load."
            ) from None
        raise CheckpointError(f"{what} {path} is a damaged torch file ({size} bytes): {refused}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{what} {path} cannot be read: truncated or damaged ({size} bytes; {text})") from None


def load_checkpoint_file(path: PathLike, *, unsafe: bool = False) -> dict[str, Any]:
    """Read a checkpoint dict safely; ``unsafe=True`` allows arbitrary pickles (trusted files only)."""
    data = torch_load_checked(path, unsafe=unsafe)
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds {describe_object(data)}, not a checkpoint (a dict)")
    return data


def _refused_object(err: BaseException) -> str:
    """The object torch's safe unpickler refused, from its long multi-line message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it needs {found.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def require_keys(data: dict[str, Any], keys: tuple[str, ...], path: PathLike) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: it is not a kdlab training checkpoint")
