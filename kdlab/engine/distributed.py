"""Data-parallel training across processes (``torchrun``): process group, collectives, SyncBN.

A run is distributed when the launcher set ``WORLD_SIZE`` > 1 (torchrun sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``).
Every helper here is an identity / no-op in a single process, so the trainer
and the loss terms call them unconditionally.

Gradient semantics under DDP: every rank backpropagates its own loss and DDP
averages the parameter gradients over ranks, i.e. the optimised objective is
the mean over ranks of the per-rank losses. The autograd collectives below
(:func:`gather_with_grad`, the CPU SyncBatchNorm) route the gradient of every
rank's loss back to the rank that produced each input, so a loss computed on
gathered tensors gets exactly the gradient a single process with the whole
global batch would get.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from kdlab.collectives import (  # noqa: F401 - re-exported for the engine's callers
    _comm_device,
    is_distributed,
    get_rank,
    get_world_size,
    is_main_process,
    barrier,
    main_first,
    all_reduce_sum,
    max_over_ranks,
    all_gather_objects,
    all_gather_rows,
    broadcast_buffers,
    gather_with_grad,
    set_gather_enabled,
    gather_enabled,
)
from kdlab.config import ConfigError


class DistributedSetupError(ConfigError):
    """The launcher's environment or the device does not allow the requested distributed run."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={raw!r} is not an integer") from None


def launch_context() -> DistContext:
    """The rank layout the launcher (torchrun, srun + torchrun) put in the environment."""
    world_size = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local_rank = _int_env("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise DistributedSetupError(
            f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}"
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def current_context() -> DistContext:
    """The context of the initialised group (or a single process)."""
    if not is_distributed():
        return DistContext()
    return DistContext(get_rank(), get_world_size(), _int_env("LOCAL_RANK", 0))


def _device_for(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DistributedSetupError("trainer.device=cuda but no CUDA device is available (use auto or cpu)")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedSetupError(
                f"LOCAL_RANK={local_rank} but this node has {count} CUDA device(s): "
                f"start at most {count} processes per node (torchrun --nproc_per_node {count})"
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the job the launcher describes (idempotent) and pick this process's device.

    A single process (no launcher) gets ``DistContext()`` and the device named
    by ``trainer.device``. Under torchrun: NCCL on CUDA (one GPU per process,
    ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    ctx = launch_context()
    if not ctx.enabled:
        return ctx, _device_for(device_name, 0)
    device = _device_for(device_name, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_available():
        raise DistributedSetupError(f"WORLD_SIZE={ctx.world_size} but this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise DistributedSetupError(
                    f"WORLD_SIZE={ctx.world_size} but {name} is not set: launch with torchrun "
                    "(it sets MASTER_ADDR/MASTER_PORT, RANK, LOCAL_RANK and WORLD_SIZE)"
                )
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
        atexit.register(shutdown)
    elif dist.get_world_size() != ctx.world_size:
        raise DistributedSetupError(
            f"a process group of {dist.get_world_size()} processes exists but WORLD_SIZE={ctx.world_size}"
        )
    return ctx, device


def shutdown() -> None:
    """Leave the process group (safe to call twice or without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------- SyncBatchNorm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks (the gradient of a sum is the summed gradient)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        work = tensor.detach().contiguous().clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        work = grad.contiguous().clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work


class CrossRankBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all ranks, on any device.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this is used for the other
    devices (gloo on CPU). Mean and (biased) variance are computed in two
    passes over the union of the ranks' batches, the running variance is the
    unbiased one, exactly as BatchNorm over the global batch. In eval mode or
    in a single process it is plain BatchNorm. State-dict keys equal
    BatchNorm's, so checkpoints load into the unconverted network.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"CrossRankBatchNorm expects (N, C, ...) input, got shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        reduce_dims = [0, *range(2, input.dim())]
        view = (1, channels) + (1,) * (input.dim() - 2)
        # statistics in at least fp32 (bf16/fp16 inputs under autocast), in fp64 for fp64 inputs
        x = input if input.dtype == torch.float64 else input.float()
        count = torch.tensor([x.numel() // channels], dtype=x.dtype, device=x.device)
        total = _AllReduceSum.apply(torch.cat([x.sum(reduce_dims), count]))
        n = total[-1]
        mean = total[:channels] / n
        centred = x - mean.view(view)
        var = _AllReduceSum.apply(centred.pow(2).sum(reduce_dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
                momentum = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum  # type: ignore[arg-type]
                )
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean.dtype), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(view)
        if self.affine:
            out = out * self.weight.view(view) + self.bias.view(view)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` normalised over the global batch.

    CUDA: ``torch.nn.SyncBatchNorm``; other devices: :class:`CrossRankBatchNorm`.
    Children are replaced in place; the (possibly new) root is returned.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cross_rank(module)


def _convert_cross_rank(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, (CrossRankBatchNorm, nn.SyncBatchNorm)):
        converted = CrossRankBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in list(module.named_children()):
        new = _convert_cross_rank(child)
        if new is not child:
            setattr(module, name, new)
    return module


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel (``module`` itself when alone or when nothing trains).

    ``find_unused_parameters`` is on: a method may leave parts of the student
    unused (e.g. the classifier in label-free distillation) or use some term
    modules only on some steps.
    """
    if not is_distributed() or not any(p.requires_grad for p in module.parameters()):
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``module``)."""
    return module.module if isinstance(module, DistributedDataParallel) else module
