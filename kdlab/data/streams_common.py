"""Helpers shared by the fast and the standard streams."""

from __future__ import annotations

from typing import Protocol

import torch

from .errors import DataError


class Planner(Protocol):
    steps: int
    global_batch: int

    def plan(self, epoch: int) -> torch.Tensor: ...


def check_start_step(start_step: int, steps: int) -> None:
    if start_step < 0:
        raise DataError(f"start_step must be >= 0, got {start_step} (the epoch has {steps} steps)")


def eval_shard(num_samples: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's evaluation indices: every ``world_size``-th sample from ``rank``, no padding duplicates."""
    return torch.arange(rank, num_samples, world_size, dtype=torch.long)


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; on CUDA through pinned memory, non-blocking.

    A copy from pageable memory waits for every kernel queued before it: one such copy per step
    would stall the GPU pipeline every step.
    """
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def move_batch(batch: dict, device: torch.device, *, channels_last: bool = False) -> dict:
    """``batch`` on ``device`` (non-blocking from pinned memory on CUDA), images optionally channels_last."""
    non_blocking = device.type == "cuda"
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=non_blocking)
        out[key] = value
    if channels_last and out["image"].ndim == 4:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out
