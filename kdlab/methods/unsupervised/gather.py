"""Concatenating rows across DDP processes, for terms whose value depends on the whole batch.

CoSS's space term (and SEED's queue) see the batch as a set. Under DDP each
process holds only its shard; ``distill.gather: true`` makes such terms work on
the global batch instead. Outside an initialised process group (one process,
CPU tests) gathering is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group, 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_rows(x: torch.Tensor, *, differentiable: bool) -> torch.Tensor:
    """Every process's ``x`` (B, ...) concatenated along dim 0, in rank order: (world * B, ...).

    Args:
        x: this process's rows; every process must pass the same shape.
        differentiable: keep the autograd graph. The gradient of each process's
            rows is the sum over processes of the gradients of their copies, so a
            loss computed identically on every process from the gathered batch,
            then averaged by DDP, gets exactly the single-process gradient of the
            global batch. Use False for tensors that need no gradient (teacher
            outputs, queue updates): it is cheaper.
    """
    if world_size() == 1:
        return x
    if differentiable:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x.contiguous()), dim=0)
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)
