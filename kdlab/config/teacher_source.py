"""Where a teacher comes from: a registry name and a weights file, or a kdlab run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from kdlab.config.loader import ConfigError, load_config
from kdlab.config.schema import Config


def resolve_teacher_source(cfg: Config) -> tuple[str, Optional[str], dict[str, Any], Optional[int]]:
    """(name, checkpoint file, kwargs, num_classes); a kdlab run folder supplies what is missing."""
    name, checkpoint = cfg.teacher.name, cfg.teacher.checkpoint
    kwargs, classes = dict(cfg.teacher.kwargs), cfg.teacher.num_classes
    if checkpoint is not None and Path(checkpoint).is_dir():
        run = Path(checkpoint)
        run_config = run / "config.yaml"
        best = run / "checkpoints" / "best.pt"
        last = run / "checkpoints" / "last.pt"
        checkpoint = str(best if best.exists() else last)
        if not Path(checkpoint).exists():
            raise ConfigError(f"teacher.checkpoint={run} is a folder without checkpoints/best.pt or last.pt")
        if run_config.exists():
            teacher_cfg = load_config(run_config)
            name = name or teacher_cfg.model.name
            kwargs = {**teacher_cfg.model.kwargs, **kwargs}
            classes = classes or teacher_cfg.model.num_classes
    if name is None:
        raise ConfigError("teacher.name is not set (and teacher.checkpoint is not a kdlab run folder)")
    if checkpoint is None:
        raise ConfigError(f"teacher {name}: teacher.checkpoint is required (a teacher must be trained)")
    if not Path(checkpoint).exists():
        raise ConfigError(f"teacher.checkpoint={checkpoint}: file not found")
    return name, checkpoint, kwargs, classes
