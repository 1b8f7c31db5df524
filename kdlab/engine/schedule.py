"""Learning-rate schedules as pure functions of fractional epochs.

The trainer sets the learning rate before every optimizer step from
``epochs_done = epoch + step / steps_per_epoch``; there is no scheduler state
to save, so resume is exact by construction.
"""

from __future__ import annotations

import bisect
import math

from kdlab.config import ScheduleConfig


def learning_rate(cfg: ScheduleConfig, base_lr: float, epochs_done: float, total_epochs: int) -> float:
    """The learning rate after ``epochs_done`` (fractional) of ``total_epochs``."""
    if cfg.warmup_epochs > 0 and epochs_done < cfg.warmup_epochs:
        return base_lr * epochs_done / cfg.warmup_epochs
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        # lr x gamma at each milestone epoch reached (milestones are whole epochs, as in MultiStepLR)
        passed = bisect.bisect_right(sorted(cfg.milestones), math.floor(epochs_done + 1e-9))
        return base_lr * cfg.gamma**passed
    span = max(total_epochs - cfg.warmup_epochs, 1e-12)
    t = min(max((epochs_done - cfg.warmup_epochs) / span, 0.0), 1.0)
    return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
