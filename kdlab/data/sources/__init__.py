"""Dataset readers: each turns a :class:`DataConfig` into a :class:`DatasetSource` without decoding images."""

from __future__ import annotations

from typing import Any

from ..errors import DataError
from .base import DatasetSource, SplitSpec
from .cifar import open_cifar
from .digits import open_digits
from .imagefolder import list_imagefolder, open_imagefolder
from .synthetic import open_synthetic

__all__ = ["DatasetSource", "SplitSpec", "open_source", "list_imagefolder"]


def open_source(cfg: Any) -> DatasetSource:
    """The dataset named by ``cfg.name`` (a DataConfig)."""
    name = cfg.name
    if name == "digits":
        return open_digits()
    if name in ("cifar10", "cifar100"):
        return open_cifar(name, cfg.root, download=bool(cfg.download))
    if name == "imagefolder":
        return open_imagefolder(cfg.root)
    if name == "synthetic":
        return open_synthetic(cfg.synthetic_train, cfg.synthetic_test, cfg.synthetic_classes, cfg.synthetic_size)
    raise DataError(f"data.name={name!r} is not a known dataset (digits, cifar10, cifar100, imagefolder, synthetic)")
