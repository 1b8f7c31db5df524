"""Shared input validation for the evaluation functions.

Every public function in :mod:`kdlab.eval` checks its inputs here so that bad shapes fail
early with a message naming the argument and showing the offending shapes, instead of
surfacing later as an opaque broadcasting or indexing error.
"""

from __future__ import annotations

import torch


def require_2d(name: str, x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a 2-D tensor of shape (N, D) with N, D >= 1."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")


def require_labels(name: str, y: torch.Tensor, rows_of: torch.Tensor, rows_of_name: str) -> None:
    """Raise ValueError unless ``y`` is a 1-D integer tensor with one entry per row of ``rows_of``."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.shape[0] != rows_of.shape[0]:
        raise ValueError(
            f"{name} must have one entry per row of {rows_of_name}, got {name} shape "
            f"{tuple(y.shape)} and {rows_of_name} shape {tuple(rows_of.shape)}"
        )


def require_same_rows(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ValueError unless ``a`` and ``b`` describe the same N samples (same first dim)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of samples (rows), "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )


def require_label_range(name: str, y: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError unless every label lies in [0, num_classes)."""
    if y.numel() == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) (num_classes={num_classes}), "
            f"got values in [{low}, {high}]"
        )


def require_positive_int(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is an int >= 1 (bools rejected: they are a typo)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` as a floating tensor of at least float32 precision.

    Half/bfloat16 embeddings are promoted because similarity ranking and exp-weights are
    precision sensitive, and some CPU kernels do not support reduced precision matmuls.
    """
    if not x.dtype.is_floating_point:
        return x.to(torch.float32)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def normalise_ks(ks) -> tuple[int, ...]:
    """``ks`` (top-k or recall@k cut-offs) as a non-empty tuple of positive integers."""
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must contain at least one k, got ()")
    for k in ks:
        require_positive_int(f"k in ks={ks}", k)
    return ks
