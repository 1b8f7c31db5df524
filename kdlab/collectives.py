"""Collectives every layer may call: rank queries, gathers, reductions, broadcasts.

A neutral module (it imports nothing of kdlab), so loss terms in ``kdlab.methods``
gather across ranks without depending on the engine that sets the process group up
(:mod:`kdlab.engine.distributed`). Every helper is an identity or a no-op in a single
process, so callers use them unconditionally.

Gradient semantics under DDP: every rank backpropagates its own loss and DDP
averages the parameter gradients over ranks. :func:`gather_with_grad` routes the
gradient of every rank's loss back to the rank that produced each row, so a loss
computed on gathered tensors gets exactly the gradient a single process with the
whole global batch would get.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0



# ----------------------------------------------------------------- collectives
def _comm_device(tensor: torch.Tensor) -> torch.device:
    """NCCL moves CUDA tensors only; gloo handles CPU (and copies CUDA tensors itself)."""
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the body first (e.g. fills a cache), then the others run it."""
    if is_distributed() and not is_main_process():
        dist.barrier()
    yield
    if is_distributed() and is_main_process():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a new tensor on the input's device; the input itself when alone)."""
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_comm_device(tensor)).clone()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def max_over_ranks(values: Sequence[int]) -> list[int]:
    """Element-wise maximum over ranks of integer flags (one collective for several decisions)."""
    if not is_distributed():
        return [int(v) for v in values]
    probe = torch.tensor(list(values), dtype=torch.int64)
    work = probe.to(_comm_device(probe))
    dist.all_reduce(work, op=dist.ReduceOp.MAX)
    return [int(v) for v in work.tolist()]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` when alone)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation along dim 0 of every rank's ``tensor`` (row counts may differ), no gradient."""
    if not is_distributed():
        return tensor
    device = _comm_device(tensor)
    local = tensor.detach().to(device).contiguous()
    sizes = torch.zeros(get_world_size(), dtype=torch.int64, device=device)
    sizes[get_rank()] = local.shape[0]
    dist.all_reduce(sizes)
    longest = int(sizes.max())
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(get_world_size())]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)]).to(tensor.device)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s buffers (e.g. BatchNorm running statistics) to every rank."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        work = buffer.data.to(_comm_device(buffer.data))
        dist.broadcast(work, src)
        if work is not buffer.data:
            buffer.data.copy_(work)


class _AllGatherCat(torch.autograd.Function):
    """Forward: concatenate every rank's tensor along dim 0. Backward: each rank gets the
    gradient that *all* ranks' losses send to its rows (sum over ranks), so cross-rank
    terms (negatives from other ranks) train the rank that produced them."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        device = _comm_device(tensor)
        local = tensor.contiguous().to(device)
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local)
        parts[ctx.rank] = local
        ctx.source_device = tensor.device
        return torch.cat(parts).to(tensor.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        work = grad.contiguous().to(_comm_device(grad)).clone()
        # all_reduce then slice rather than reduce_scatter: gloo has no reduce_scatter,
        # and the gathered tensors here are batch-sized (cheap to send whole).
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return work[start : start + ctx.rows].to(ctx.source_device)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, differentiable.

    Identity in a single process. All ranks must pass the same shape (the
    planner gives every rank the same per-rank batch). Rows of this rank sit at
    ``[rank * B, (rank + 1) * B)``; gradients reaching any row flow back to the
    rank that produced it, so a loss over the gathered batch trains exactly as
    one process holding the global batch would. Tensors without gradient are
    gathered plainly.
    """
    if not is_distributed():
        return tensor
    if tensor.dim() == 0:
        raise ValueError(f"gather_with_grad needs a tensor with a batch dimension, got a scalar {tensor!r}")
    if not tensor.requires_grad:
        device = _comm_device(tensor)
        local = tensor.detach().contiguous().to(device)
        parts = [torch.empty_like(local) for _ in range(get_world_size())]
        dist.all_gather(parts, local)
        return torch.cat(parts).to(tensor.device)
    return _AllGatherCat.apply(tensor)


_GATHER = {"enabled": False}


def set_gather_enabled(enabled: bool) -> None:
    """Set by the trainer from ``distill.gather``."""
    _GATHER["enabled"] = bool(enabled)


def gather_enabled() -> bool:
    """True when batch-dependent loss terms should gather across ranks (``distill.gather`` under DDP).

    A term computes its batch-level loss on ``gather_with_grad(x)`` instead of
    ``x`` when this is true; it stays False in a single process.
    """
    return _GATHER["enabled"] and is_distributed()


def gather_varlen_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`gather_with_grad` for row counts that differ between ranks (e.g. sampled RoIs).

    Rows are padded to the longest rank, gathered with gradient, and the padding
    dropped again; gradients of the kept rows flow back to the rank that produced them.
    """
    if not is_distributed():
        return tensor
    sizes = torch.zeros(get_world_size(), dtype=torch.int64)
    sizes[get_rank()] = tensor.shape[0]
    sizes = all_reduce_sum(sizes)
    longest = int(sizes.max())
    padded = torch.cat([tensor, tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))])
    gathered = gather_with_grad(padded)
    keep = torch.cat([torch.arange(int(n)) + r * longest for r, n in enumerate(sizes.tolist())]).to(tensor.device)
    return gathered.index_select(0, keep)
