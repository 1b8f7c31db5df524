"""CIFAR-10 / CIFAR-100 in their official "python version" pickle folders."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import DatasetSource, SplitSpec

_LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": b"labels",
        "names_key": b"label_names",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": b"fine_labels",
        "names_key": b"fine_label_names",
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
    },
}


def _find_folder(root: Path, name: str) -> Path | None:
    layout = _LAYOUT[name]
    for candidate in (root / layout["folder"], root):
        if (candidate / layout["meta"]).exists() or (candidate / layout["train"][0]).exists():
            return candidate
    return None


def _download(root: Path, name: str) -> None:
    from torchvision import datasets

    dataset_cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    dataset_cls(str(root), train=True, download=True)


#: the only globals a CIFAR "python version" batch pickles: numpy arrays (numpy 1 and 2 module names)
#: and, in a batch re-saved by Python 3, the latin-1 encoding of its bytes
_BATCH_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3 (a re-saved batch)
})


class _RefusedGlobal(Exception):
    pass


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR batch holds (dicts, bytes, lists, numbers, numpy
    arrays); any other class or function named in the file is refused before it is looked up, so a
    crafted file cannot run code (the stance ``weights_only=True`` takes for checkpoints)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _BATCH_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            batch = _BatchUnpickler(handle, encoding="bytes").load()
    except _RefusedGlobal as refused:
        raise DataError(
            f"CIFAR batch file {path} names {refused} in its pickle, which a CIFAR batch never holds; "
            "refusing to load it (a crafted pickle can run code): replace it with the official file"
        ) from None
    except Exception as exc:  # unpickling a damaged file raises many types
        detail = " ".join(str(exc).split()) or "no detail"
        raise DataError(f"cannot read CIFAR batch file {path} (damaged or not a CIFAR batch): "
                        f"{type(exc).__name__}: {detail}") from None
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR batch file {path} holds a {type(batch).__name__}, not the dict of a CIFAR batch")
    return batch


def _load_batches(folder: Path, files: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file_name in files:
        path = folder / file_name
        batch = _load_pickle(path)
        if b"data" not in batch or label_key not in batch:
            raise DataError(
                f"CIFAR batch file {path} lacks the keys b'data' and {label_key!r}; found {sorted(batch)[:6]}"
            )
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"CIFAR batch file {path}: b'data' must be (N, 3072) uint8, got shape {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def open_cifar(name: str, root: str | None, download: bool = False) -> DatasetSource:
    """CIFAR-10/100 from ``root`` (the folder holding the batch folder, or the batch folder itself)."""
    layout = _LAYOUT[name]
    if root is None:
        raise DataError(f"data.root is required for data.name={name} (the folder holding {layout['folder']}/)")
    root_path = Path(root).expanduser()
    folder = _find_folder(root_path, name)
    if folder is None and download:
        _download(root_path, name)
        folder = _find_folder(root_path, name)
    if folder is None:
        raise DataError(
            f"data.root={root}: no {layout['folder']}/ folder (nor its files) found there; "
            f"expected {root_path / layout['folder']}/ with {', '.join(layout['train'] + layout['test'])} "
            f"and {layout['meta']} (set data.download=true to fetch it)"
        )
    required = layout["train"] + layout["test"] + [layout["meta"]]
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        raise DataError(f"CIFAR folder {folder} is missing {', '.join(missing)} (expected {', '.join(required)})")

    meta = _load_pickle(folder / layout["meta"])
    if layout["names_key"] not in meta:
        raise DataError(f"CIFAR meta file {folder / layout['meta']} lacks {layout['names_key']!r}")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[layout["names_key"]]]
    train_images, train_labels = _load_batches(folder, layout["train"], layout["label_key"])
    test_images, test_labels = _load_batches(folder, layout["test"], layout["label_key"])
    for split, labels in (("train", train_labels), ("test", test_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(
                f"CIFAR folder {folder}: {split} labels span [{labels.min()}, {labels.max()}] "
                f"but {layout['meta']} names {len(classes)} classes"
            )

    def identity() -> str:
        digest = hashlib.blake2b(digest_size=16)
        for file_name in required:
            stat = (folder / file_name).stat()
            digest.update(f"{(folder / file_name).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\0".encode())
        return digest.hexdigest()

    return DatasetSource(
        name=name,
        root=str(folder),
        classes=classes,
        in_chans=3,
        native_size=32,
        mean=layout["mean"],
        std=layout["std"],
        train=SplitSpec("train", train_labels, arrays=train_images),
        eval=SplitSpec("test", test_labels, arrays=test_images),
        identity=identity,
    )
