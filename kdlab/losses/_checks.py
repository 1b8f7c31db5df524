"""Shared input checks and dtype handling for the loss functions.

Every loss validates its inputs up front so that a wrong wiring (a teacher
with a different number of classes, a feature map passed where an embedding
was expected, ...) fails with a message that names the function, the argument
and the shapes, instead of a broadcasting error deep inside the arithmetic.
"""

from __future__ import annotations

import torch
from torch import Tensor


def shape_str(tensor: Tensor) -> str:
    """Render a tensor's shape as ``(8, 10)`` for error messages."""
    dims = tuple(tensor.shape)
    if len(dims) == 1:
        return f"({dims[0]},)"
    return "(" + ", ".join(str(d) for d in dims) + ")"


def check_ndim(fn: str, name: str, tensor: Tensor, ndim: int, layout: str) -> None:
    """Require ``tensor`` to have exactly ``ndim`` dimensions; ``layout`` names them."""
    if tensor.ndim != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D {layout}, got shape {shape_str(tensor)}")


def check_min_ndim(fn: str, name: str, tensor: Tensor, ndim: int, layout: str) -> None:
    """Require ``tensor`` to have at least ``ndim`` dimensions."""
    if tensor.ndim < ndim:
        raise ValueError(f"{fn}: {name} must have at least {ndim} dimensions {layout}, got shape {shape_str(tensor)}")


def check_same_shape(fn: str, name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Require two tensors of identical shape."""
    if a.shape != b.shape:
        raise ValueError(f"{fn}: {name_a} {shape_str(a)} and {name_b} {shape_str(b)} must have the same shape")


def check_same_dim(fn: str, name_a: str, a: Tensor, name_b: str, b: Tensor, dim: int, what: str) -> None:
    """Require ``a.shape[dim] == b.shape[dim]``; ``what`` names that dimension (e.g. "batch size")."""
    if a.shape[dim] != b.shape[dim]:
        raise ValueError(f"{fn}: {name_a} {shape_str(a)} and {name_b} {shape_str(b)} must have the same {what}")


def check_min_batch(fn: str, name: str, tensor: Tensor, minimum: int) -> None:
    """Require at least ``minimum`` samples along dimension 0."""
    if tensor.shape[0] < minimum:
        raise ValueError(f"{fn}: {name} {shape_str(tensor)} needs at least {minimum} sample(s) along dimension 0")


def check_positive(fn: str, name: str, value: float) -> None:
    """Require a strictly positive hyper-parameter (temperatures, exponents, sizes)."""
    if not value > 0:
        raise ValueError(f"{fn}: {name} must be > 0, got {value}")


def check_non_negative(fn: str, name: str, value: float) -> None:
    """Require a hyper-parameter >= 0 (weights, ratios)."""
    if not value >= 0:
        raise ValueError(f"{fn}: {name} must be >= 0, got {value}")


def check_targets(fn: str, targets: Tensor, batch_size: int, num_classes: int, name: str = "targets") -> None:
    """Require integer class indices of shape (batch_size,) in ``[0, num_classes)``."""
    if targets.ndim != 1 or targets.shape[0] != batch_size:
        raise ValueError(f"{fn}: {name} must have shape ({batch_size},), got {shape_str(targets)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(f"{fn}: {name} must hold integer class indices, got dtype {targets.dtype}")
    if targets.numel() > 0:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"{fn}: {name} must lie in [0, {num_classes}), got values in [{low}, {high}]")


def upcast(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Bring all tensors to one compute dtype of at least float32.

    Half/bfloat16 inputs (autocast outputs) are computed in float32 because
    softmax/log/exp of low-precision logits loses the small differences the
    losses are made of; float64 inputs stay float64 so reference tests can
    compare in double precision.
    """
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return tuple(tensor.to(dtype) for tensor in tensors)
