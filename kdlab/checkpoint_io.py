"""Checkpoint files: written atomically, read safely (``weights_only=True``), hashed.

A neutral module (it imports nothing of kdlab): the engine's checkpoints, the
methods' artefacts (SSKD heads, MoCo teachers) and the caches all write and
read files through it. Outputs go only to regular files or new paths
(:func:`check_output_file`, :func:`check_output_folder`): a device, a named pipe,
a socket or a folder where a file is to be written is refused, never replaced.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not what was expected."""


class OutputPathError(CheckpointError):
    """An output path names something other than a regular file or a new path: refused before any work.

    A device, a named pipe, a socket or a folder at an output path is never written to, replaced or
    removed (an atomic write, temporary file + rename, would swap ``/dev/null`` for a regular file).
    A :class:`CheckpointError` (a ``ValueError``), so that the command line reports it as one line
    with exit code 2.
    """


#: what ``stat`` says a path is, in the words of the refusal
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISREG, "a regular file"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` (itself excluded) that exists; ``.`` for a relative path."""
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def _check_new_path(path: Path, what: str) -> None:
    """A path that does not exist yet: its folders can be made only below an existing folder."""
    ancestor = _existing_ancestor(path)
    try:
        mode = ancestor.stat().st_mode
    except OSError as err:
        raise OutputPathError(f"{what} {path} cannot be created: {ancestor}: {err.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise OutputPathError(f"{what} {path} cannot be created: {ancestor} is {_kind(mode)}, not a folder")


def _path_mode(path: Path, what: str) -> tuple[int | None, str]:
    """``(st_mode, how it is named)`` of what ``path`` names, following a symbolic link; mode None: no such path."""
    try:
        link = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None, str(path)
    except OSError as err:
        raise OutputPathError(f"{what} {path} cannot be used: {err.strerror}") from None
    if not stat.S_ISLNK(link.st_mode):
        return link.st_mode, str(path)
    target = os.path.realpath(path)
    try:
        return path.stat().st_mode, f"{path} is a symbolic link to {target},"
    except FileNotFoundError:
        raise OutputPathError(f"{what} {path} is a symbolic link to {target}, which does not exist "
                              "(remove the link or choose another path)") from None
    except OSError as err:  # ELOOP: a link cycle
        raise OutputPathError(f"{what} {path} is a symbolic link that cannot be followed ({err.strerror})") from None


def check_output_file(path: PathLike, what: str = "output") -> Path:
    """``path`` as a :class:`Path` when it is a regular file (overwritten) or does not exist yet (created).

    Anything else raises :class:`OutputPathError` naming the path and what it is: "--out /dev/null
    is a character device, not a regular file". A symbolic link counts as what it points to (a link
    to a regular file is accepted; an atomic write replaces the link itself, the file it pointed to is
    left as it was). ``what`` names the option or setting in the message (``--out``, ``data.knn_index``).
    Nothing is created, written or removed here.
    """
    path = Path(path)
    mode, named = _path_mode(path, what)
    if mode is None:
        _check_new_path(path, what)
        return path
    if stat.S_ISREG(mode):
        return path
    hint = " (give a file name in it)" if stat.S_ISDIR(mode) else " (outputs go only to regular files or new paths)"
    lead = named if named != str(path) else f"{path} is"
    raise OutputPathError(f"{what} {lead} {_kind(mode)}, not a regular file{hint}")


def check_output_folder(path: PathLike, what: str = "output folder") -> Path:
    """``path`` as a :class:`Path` when it is a folder (a link to one counts) or does not exist yet.

    Anything else (a regular file, a device, a named pipe, a socket) raises :class:`OutputPathError`
    naming the path and what it is. Nothing is created or removed here.
    """
    path = Path(path)
    mode, named = _path_mode(path, what)
    if mode is None:
        _check_new_path(path, what)
        return path
    if stat.S_ISDIR(mode):
        return path
    lead = named if named != str(path) else f"{path} is"
    raise OutputPathError(f"{what} {lead} {_kind(mode)}, not a folder")


def _new_file_mode(path: Path) -> int:
    """The permissions ``open(path, "w")`` would give: those of the file replaced, else 0o666 less the umask
    (``mkstemp`` makes its file private to the owner, which a report or an export must not become)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # elsewhere: set and restore at once, the restrictive value in between
    os.umask(mask)
    return mask


def _replace_atomically(path: Path, write: Any) -> Path:
    """``write(handle)`` into a temporary file beside ``path``, fsync, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: PathLike, *, what: str = "output") -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A write interrupted at any point leaves the previous file intact. ``path`` must be a regular
    file or a new path (:func:`check_output_file`; ``what`` names it in the refusal).
    """
    path = check_output_file(path, what)
    return _replace_atomically(path, lambda handle: torch.save(obj, handle))


def atomic_write_bytes(path: PathLike, data: bytes, *, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically, like :func:`atomic_save`, after :func:`check_output_file`."""
    path = check_output_file(path, what)
    return _replace_atomically(path, lambda handle: handle.write(data))


def atomic_write_text(path: PathLike, text: str, *, what: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, like :func:`atomic_save`, after :func:`check_output_file`."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


def atomic_copy(src: PathLike, dst: PathLike, *, what: str = "output") -> Path:
    """Copy ``src``'s bytes to ``dst`` atomically (temporary file + rename); ``dst`` as in :func:`check_output_file`."""
    dst = check_output_file(dst, what)

    def copy(handle: Any) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, handle, 1 << 20)

    return _replace_atomically(dst, copy)


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
    except Exception as err:  # noqa: BLE001 - a damaged archive or legacy file fails in many ways inside torch
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
