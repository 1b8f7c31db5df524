"""The task interface the one trainer calls."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn

#: task name -> "module:Class" (imported on first use: detection pulls in torchvision's detection code)
_TASKS = {
    "classification": "kdlab.tasks.classification:ClassificationTask",
    "detection": "kdlab.tasks.detection:DetectionTask",
}


@dataclass
class EvalParts:
    """What an evaluation may look at."""

    cfg: Any
    student: nn.Module
    method: nn.Module
    data: Any
    autocast: Optional[torch.autocast]
    distributed: bool


class Task:
    """One kind of learning problem. Subclasses implement every method below."""

    name: ClassVar[str] = ""
    #: metrics shown on the per-epoch progress line, when present
    summary_keys: ClassVar[tuple[str, ...]] = ()

    def build_data(
        self, cfg: Any, *, device: torch.device, rank: int, world_size: int, channels_last: bool, progress: bool
    ) -> Any:
        """The data bundle: ``train`` (``steps_per_epoch``, ``epoch(e, start_step)``), ``eval``, ``train_size``."""
        raise NotImplementedError

    def build_networks(self, cfg: Any, data: Any, *, unsafe_load: bool) -> tuple[nn.Module, Optional[nn.Module]]:
        """The student and the frozen teacher (None without one; a TeacherSet for ``teachers:``), on the CPU."""
        raise NotImplementedError

    def memory_format(self, cfg: Any) -> torch.memory_format:
        """The layout the networks are moved to."""
        return torch.contiguous_format

    def build_method(
        self, cfg: Any, student: nn.Module, teacher: Optional[nn.Module], data: Any, device: torch.device
    ) -> tuple[nn.Module, Any]:
        """The method (a Distiller owning the loss terms) and the data it reads (possibly re-wrapped)."""
        raise NotImplementedError

    def accumulate(self, sums: dict[str, Any], out: Any, batch: dict[str, Any], method: nn.Module) -> None:
        """Add what a training step measured beyond its loss terms (on-device; keys with '_' are counts)."""

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Epoch-level training metrics from the reduced sums of :meth:`accumulate`."""
        return {}

    def evaluate(self, parts: EvalParts) -> dict[str, Any]:
        """The per-epoch evaluation row (keys ``val_*``); every rank returns the whole split's result."""
        raise NotImplementedError


def task_names() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """The task registered under ``name`` (the config key ``task``)."""
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; one of {', '.join(task_names())}")
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
