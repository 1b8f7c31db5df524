"""Running sums of a training epoch, and their reduction over DDP ranks.

Loss terms are summed on the device every step (no host sync); at log and
checkpoint points the sums become Python floats, reduced over ranks first:
loss values become the mean over ranks (the loss of the global batch for
per-sample means), counts (keys starting with "_") add up.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from kdlab import collectives
from kdlab.engine.stop_signal import STOP_PREFIXES, urgency


def add_losses(sums: dict[str, Any], out: Any) -> None:
    """Add a step's total and named terms to the on-device running ``sums``."""
    sums["loss"] = sums.get("loss", 0.0) + out.loss.detach().float()
    for key, value in out.terms.items():
        sums[key] = sums.get(key, 0.0) + value.float()


def flush_into(pending: dict[str, Any], epoch_sums: dict[str, float], world_size: int) -> None:
    """Move ``pending`` (on-device sums) into ``epoch_sums`` (floats), reduced over ranks; empties ``pending``."""
    keys = sorted(pending)
    values = [float(pending[k]) for k in keys]
    if world_size > 1 and keys:
        reduced = collectives.all_reduce_sum(torch.tensor(values, dtype=torch.float64))
        values = [v if k.startswith("_") else v / world_size for k, v in zip(keys, reduced.tolist())]
    for key, value in zip(keys, values):
        epoch_sums[key] = epoch_sums.get(key, 0.0) + value
    pending.clear()


def epoch_means(epoch_sums: dict[str, float], steps: int) -> dict[str, float]:
    """``train_loss`` and ``train_<term>``: per-step means of the epoch's sums."""
    n = max(steps, 1)
    row = {"train_loss": epoch_sums.get("loss", 0.0) / n}
    for key, value in epoch_sums.items():
        if not key.startswith("_") and key != "loss":
            row[f"train_{key}"] = value / n
    return row


def agree(finite: bool, reason: Optional[str], world_size: int, reason_text: Any) -> tuple[bool, Optional[str]]:
    """Every rank takes the same decision: any non-finite rank stops all, the most urgent stop wins.

    ``reason_text(index)`` renders the reason of :data:`STOP_PREFIXES` ``[index]`` that another rank had.
    """
    if world_size <= 1:
        return finite, reason
    code = urgency(reason)
    bad, agreed = collectives.max_over_ranks([0 if finite else 1, code])
    if agreed != code:
        reason = reason_text(agreed - 1) if agreed else None
    return not bad, reason


__all__ = ["STOP_PREFIXES", "add_losses", "agree", "epoch_means", "flush_into"]
