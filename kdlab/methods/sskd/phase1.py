"""SSKD phase 1: train the frozen teacher's self-supervision head once, reuse it afterwards.

Phase 1 is an ordinary kdlab run, derived from the SSKD run's config: the
teacher is the model (``model.frozen: true``, so only the head trains), the
data are the SSKD run's with ``views: rotate4``, and the one loss term is
``sskd_head``. Its run folder is keyed by a digest of the teacher file and of
everything that shapes the head's training, and lives beside the teacher::

    <teacher run folder, or the checkpoint file's folder>/sskd_head/<digest>/

When that place is read-only the run goes to the user cache instead
(``$KDLAB_CACHE_DIR`` or ``~/.cache/kdlab``, then ``sskd_head/<digest>/``). A
finished phase 1 (``final.json`` present) is found in either place and reused,
so later SSKD runs with the same teacher and head settings skip it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from kdlab.config import Config, ConfigError, flatten_config, from_dict, to_dict
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.checkpoint_io import CheckpointError, file_sha256, load_checkpoint_file
from kdlab.methods.base import Prerequisite
from kdlab.methods.prerequisite_place import NOT_HASHED, prerequisite_run_dir

#: the phase-1 term's name and key (its head's checkpoint keys start with ``terms.<key>.head.``)
HEAD_TERM = "sskd_head"
#: bump when the phase-1 recipe changes in a way the config does not show
RECIPE_VERSION = 1
DEFAULT_HEAD_EPOCHS = 60
DEFAULT_HEAD_LR = 0.05
DEFAULT_HEAD_MILESTONES = (30, 45)
#: SGD settings of the official phase 1 (not configurable: the paper fixes them)
HEAD_MOMENTUM = 0.9
HEAD_WEIGHT_DECAY = 5e-4
HEAD_GAMMA = 0.1
#: phase 1 always uses this seed: the head is a function of the teacher, the data and the
#: settings only, so every seed of the student shares one head
HEAD_SEED = 0
HEAD_LOG_EVERY = 50


@dataclass(frozen=True)
class HeadSettings:
    """How the teacher's head is trained (the ``sskd`` term's ``head_*`` parameters)."""

    epochs: int = DEFAULT_HEAD_EPOCHS
    lr: float = DEFAULT_HEAD_LR
    milestones: tuple[int, ...] = DEFAULT_HEAD_MILESTONES

    @classmethod
    def from_params(
        cls,
        epochs: Any = DEFAULT_HEAD_EPOCHS,
        lr: Any = DEFAULT_HEAD_LR,
        milestones: Any = DEFAULT_HEAD_MILESTONES,
    ) -> "HeadSettings":
        """Validated settings; bad values raise ValueError naming the parameter."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"head_epochs={epochs!r} must be an integer >= 1")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            raise ValueError(f"head_lr={lr!r} must be a number > 0")
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise ValueError(f"head_milestones={milestones!r} must be a list of epochs, e.g. [30, 45]")
        stones = tuple(milestones)
        if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in stones):
            raise ValueError(f"head_milestones={list(stones)!r} must be whole epochs >= 1")
        return cls(epochs=epochs, lr=float(lr), milestones=tuple(sorted(stones)))


def head_run_config(cfg: Config, settings: HeadSettings, out_dir: str | Path) -> Config:
    """The phase-1 config derived from an SSKD run's config (see the module docstring)."""
    name, checkpoint, kwargs, classes = resolve_teacher_source(cfg)
    source = to_dict(cfg)
    data = dict(source["data"], views="rotate4")
    if cfg.teacher.mean is not None or cfg.teacher.std is not None:
        # The teacher is the model here, fed by the data pipeline directly: normalising
        # with its own statistics is exactly what FrozenTeacher's re-normalisation does.
        data.update(mean=cfg.teacher.mean, std=cfg.teacher.std)
    trainer = source["trainer"]
    derived = {
        "description": f"SSKD phase 1: self-supervision head of the frozen teacher {name} ({checkpoint})",
        "trainer": {
            "epochs": settings.epochs,
            "out_dir": str(out_dir),
            "seed": HEAD_SEED,
            "device": trainer["device"],
            "precision": trainer["precision"],
            "channels_last": trainer["channels_last"],
            "progress": trainer["progress"],
            "log_every": HEAD_LOG_EVERY,
            "eval_every": min(10, settings.epochs),
            "best_metric": f"val_{HEAD_TERM}_ss_top1",
        },
        "optim": {
            "name": "sgd",
            "lr": settings.lr,
            "momentum": HEAD_MOMENTUM,
            "weight_decay": HEAD_WEIGHT_DECAY,
            "nesterov": False,
        },
        "schedule": {"name": "step", "milestones": list(settings.milestones), "gamma": HEAD_GAMMA},
        "data": data,
        "model": {
            "name": name,
            "num_classes": classes,
            # absolute, so a resumed phase 1 sees the same config from any working directory
            "checkpoint": str(Path(checkpoint).resolve()),
            "kwargs": kwargs,
            "frozen": True,
        },
        "distill": {"terms": [{"name": HEAD_TERM}], "labels": True},
        "logging": source["logging"],
    }
    return from_dict(derived)


def head_digest(cfg: Config, settings: HeadSettings) -> str:
    """12 hex digits identifying the head: the teacher file's bytes and everything that trains the head."""
    _, checkpoint, _, _ = resolve_teacher_source(cfg)
    recipe = flatten_config(to_dict(head_run_config(cfg, settings, out_dir="-")))
    payload = {
        "recipe_version": RECIPE_VERSION,
        "teacher_sha256": file_sha256(checkpoint),
        "config": {k: v for k, v in recipe.items() if k not in NOT_HASHED},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def head_run_dir(cfg: Config, settings: HeadSettings) -> Path:
    """Where phase 1 of this teacher + settings lives (finished, in progress, or to be run); see
    :func:`kdlab.methods.prerequisite_place.prerequisite_run_dir` for the order of the places."""
    return prerequisite_run_dir(cfg, HEAD_TERM, head_digest(cfg, settings))


def head_prerequisite(cfg: Config, settings: HeadSettings) -> Prerequisite:
    """The phase-1 run that an SSKD run needs finished first."""
    run_dir = head_run_dir(cfg, settings)
    epochs = f"{settings.epochs} epoch" + ("s" if settings.epochs > 1 else "")
    return Prerequisite(
        description=f"SSKD phase 1 (the teacher's self-supervision head, {epochs})",
        config=head_run_config(cfg, settings, run_dir),
        produces=run_dir / "final.json",
    )


#: where a head's weights may sit inside a file: a kdlab phase-1 checkpoint, the official
#: SSKD wrapper's state_dict (``proj_head.*``), or a bare head state_dict
_HEAD_PREFIXES = (f"terms.{HEAD_TERM}.head.", "proj_head.", "module.proj_head.", "")
_HEAD_KEYS = ("0.weight", "0.bias", "2.weight", "2.bias")


def load_head_state(source: str | Path, dim: Optional[int] = None) -> dict[str, torch.Tensor]:
    """The teacher head's state_dict (keys ``0.weight`` .. ``2.bias``) read from ``source``.

    ``source``: a phase-1 run folder (its ``checkpoints/last.pt``), a kdlab
    checkpoint whose ``method`` entry holds ``terms.sskd_head.head.*``, or a
    file holding the head's own state_dict. ``dim``: the teacher's embedding
    size, checked against the head's weights.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"SSKD teacher head: no such file {path}")
    state = load_checkpoint_file(path)
    tables = [t for t in (state.get("method"), state.get("state_dict"), state) if isinstance(t, dict)]
    for table in tables:
        for prefix in _HEAD_PREFIXES:
            if all(prefix + key in table for key in _HEAD_KEYS):
                head = {key: table[prefix + key] for key in _HEAD_KEYS}
                _check_head_shapes(head, dim, path)
                return head
    sample = sorted(k for t in tables for k in t if isinstance(k, str))[:8]
    raise CheckpointError(
        f"SSKD teacher head: {path} holds no projection head (looked for keys "
        f"{', '.join(p + '0.weight' for p in _HEAD_PREFIXES if p)} or a bare head state_dict); "
        f"found keys such as {sample}"
    )


def _check_head_shapes(head: dict[str, torch.Tensor], dim: Optional[int], path: Path) -> None:
    shapes = {key: tuple(value.shape) for key, value in head.items()}
    width = shapes["0.weight"][1] if len(shapes["0.weight"]) == 2 else None
    expected_dim = dim if dim is not None else width
    expected = {
        "0.weight": (expected_dim, expected_dim),
        "0.bias": (expected_dim,),
        "2.weight": (expected_dim, expected_dim),
        "2.bias": (expected_dim,),
    }
    if shapes != expected:
        raise CheckpointError(
            f"SSKD teacher head in {path} has shapes {shapes}, but the teacher's embedding has "
            f"{expected_dim} dimensions (expected {expected}): was it trained for another teacher?"
        )


def require_finished(run_dir: Path) -> Path:
    """The phase-1 checkpoint of a finished run, or a clear error naming what is missing."""
    if not (run_dir / "final.json").exists():
        raise ConfigError(
            f"the teacher's SSKD head has not been trained yet: {run_dir / 'final.json'} is missing. "
            "`kdlab train` trains it first (phase 1); or set the sskd term's head_checkpoint"
        )
    return run_dir / "checkpoints" / "last.pt"
