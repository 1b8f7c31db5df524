"""Building blocks shared by the performance tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlab.config import Config, load_config
from kdlab.models import create_model
from kdlab.data import build_data
from kdlab.engine.builders import build_teacher


def config(tiny: dict, *extra: str) -> Config:
    return load_config(None, [*tiny["overrides"], *extra])


def data_and_teacher(cfg: Config, seed: int | None = None) -> tuple[Any, Any]:
    """The fast-path bundle (seeded by ``seed`` or trainer.seed) and the frozen teacher, on the CPU."""
    data = build_data(cfg.data, seed=cfg.trainer.seed if seed is None else seed, device="cpu")
    teacher = build_teacher(cfg, data.num_classes, data.in_chans, data.mean, data.std)
    return data, teacher


def first_batches(stream: Any, epoch: int, count: int) -> list[dict[str, Any]]:
    batches = []
    for batch in stream.epoch(epoch):
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


def live_logits(teacher: Any, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return teacher(images)


def cache_path(tiny: dict, name: str = "cache") -> Path:
    return tiny["root"] / name


CLASSES = ("ant", "bee", "cow")


def write_teacher(path: Path, name: str = "resnet8", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(create_model(name, num_classes=len(CLASSES)).state_dict(), path)
    return path
