"""Where a teacher comes from: a registry name and a weights file, a kdlab checkpoint file, or a kdlab run folder.

``teacher.checkpoint`` may be

- a kdlab run folder (``runs/x``): the weights are ``checkpoints/best.pt`` (else ``last.pt``), the
  architecture comes from the folder's ``config.yaml``;
- a kdlab checkpoint file (``runs/x/checkpoints/best.pt``): the architecture, model kwargs and number
  of classes come from the config stored inside the checkpoint;
- any other weights file (a released teacher, a torchvision file, ...): then ``teacher.name`` names
  the architecture.

An explicit ``teacher.name`` that contradicts the stored architecture is an error naming both: a
silent override would load weights into the wrong network, or fail later with a key listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from kdlab.config.loader import ConfigError, load_config
from kdlab.config.schema import Config

_STORED_MODELS: dict[tuple[str, int, int], Optional[dict[str, Any]]] = {}


def stored_model_config(path: str | Path) -> Optional[dict[str, Any]]:
    """The ``model`` section of the config a kdlab checkpoint file carries, or None for other files.

    Read safely (``weights_only``) and memory-mapped where the format allows, so a large teacher is not
    read twice; a file that does not parse as a kdlab checkpoint is simply not one (its own loader
    reports what is wrong with it later).
    """
    import torch

    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key in _STORED_MODELS:
        return _STORED_MODELS[key]
    data: Any = None
    for mmap in (True, False):  # files in torch's legacy (pre-zip) format cannot be memory-mapped
        try:
            data = torch.load(resolved, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception:  # noqa: BLE001 - any unreadable or foreign file is "not a kdlab checkpoint"
            continue
    model = None
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "model" in data:
        stored = data["config"].get("model")
        if isinstance(stored, dict) and isinstance(stored.get("name"), str):
            model = stored
    _STORED_MODELS[key] = model
    return model


def _architecture_from_checkpoint(checkpoint: str) -> Optional[tuple[str, dict[str, Any], Optional[int]]]:
    """(name, kwargs, num_classes) stored in a kdlab checkpoint file, or None for a plain weights file.

    Read field by field rather than through today's schema, so checkpoints written by an older kdlab
    (whose configs may hold keys since removed) keep working as teachers.
    """
    stored = stored_model_config(checkpoint)
    if stored is None:
        return None
    kwargs = stored.get("kwargs") or {}
    classes = stored.get("num_classes")
    if not isinstance(kwargs, dict) or not (classes is None or isinstance(classes, int)):
        raise ConfigError(
            f"teacher.checkpoint={checkpoint}: its stored config has an unreadable model section "
            f"(kwargs={kwargs!r}, num_classes={classes!r})"
        )
    return stored["name"], dict(kwargs), classes


def _checked_name(explicit: Optional[str], stored: str, where: str) -> str:
    if explicit is not None and explicit != stored:
        raise ConfigError(
            f"teacher.name={explicit!r} contradicts the architecture stored in {where} ({stored!r}); "
            f"remove teacher.name or set it to {stored!r}"
        )
    return stored


def resolve_teacher_source(cfg: Config) -> tuple[str, Optional[str], dict[str, Any], Optional[int]]:
    """(name, checkpoint file, kwargs, num_classes); a kdlab run folder or checkpoint supplies what is missing."""
    name, checkpoint = cfg.teacher.name, cfg.teacher.checkpoint
    kwargs, classes = dict(cfg.teacher.kwargs), cfg.teacher.num_classes
    stored: Optional[tuple[str, dict[str, Any], Optional[int]]] = None
    where = ""
    if checkpoint is not None and Path(checkpoint).is_dir():
        run = Path(checkpoint)
        best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
        checkpoint = str(best if best.exists() else last)
        if not Path(checkpoint).exists():
            raise ConfigError(f"teacher.checkpoint={run} is a folder without checkpoints/best.pt or last.pt")
        if (run / "config.yaml").exists():
            model = load_config(run / "config.yaml").model
            stored, where = (model.name, dict(model.kwargs), model.num_classes), f"{run / 'config.yaml'}"
    elif checkpoint is not None and Path(checkpoint).is_file():
        stored, where = _architecture_from_checkpoint(checkpoint), f"the checkpoint {checkpoint}"
    if stored is not None:
        stored_name, stored_kwargs, stored_classes = stored
        name = _checked_name(name, stored_name, where)
        kwargs = {**stored_kwargs, **kwargs}
        classes = classes or stored_classes
    if name is None:
        if checkpoint is None:
            raise ConfigError("teacher.name is not set (and no teacher.checkpoint: a kdlab run folder or checkpoint)")
        if not Path(checkpoint).exists():
            raise ConfigError(f"teacher.checkpoint={checkpoint}: file not found")
        raise ConfigError(
            f"teacher.name is not set and teacher.checkpoint={checkpoint} is not a kdlab checkpoint "
            "(it stores no config): set teacher.name to its architecture"
        )
    if checkpoint is None:
        raise ConfigError(f"teacher {name}: teacher.checkpoint is required (a teacher must be trained)")
    if not Path(checkpoint).exists():
        raise ConfigError(f"teacher.checkpoint={checkpoint}: file not found")
    return name, checkpoint, kwargs, classes
