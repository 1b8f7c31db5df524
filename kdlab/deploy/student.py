"""The student of a finished run, alone: what ``kdlab export`` writes and ``kdlab profile`` measures.

A run folder (``config.yaml`` + ``checkpoints/{best,last}.pt``) or one kdlab checkpoint file
(which carries its config) names everything: the architecture and its kwargs come from the
config, the weights from the checkpoint's ``model`` entry (the student's state dict; the
method's own modules - adapters, heads, memory banks - live under ``method`` and are left out),
and the facts about the input come from the checkpoint's ``data_facts`` (number of classes,
class names, channels, resolution, normalisation), which the trainer records since kdlab 0.1.
A checkpoint written before that has them rebuilt from its config's dataset, which must then be
readable here; otherwise the error says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from kdlab.checkpoint_io import CheckpointError, load_checkpoint_file
from kdlab.config import Config, ConfigError, from_dict, load_config

#: which checkpoint of a run folder is the deployed one by default: the best evaluated epoch
DEFAULT_CHECKPOINT = "best"
CHECKPOINT_CHOICES = ("best", "last")


class UnsupportedTaskError(ConfigError):
    """The run's task has no deployable student here yet (detection): callers name what they cannot do."""

    def __init__(self, message: str, task: str) -> None:
        super().__init__(message)
        self.task = task


@dataclass(frozen=True)
class DataFacts:
    """What a deployed model needs to know about its input and output."""

    num_classes: int
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "in_chans": self.in_chans, "image_size": self.image_size,
                "mean": list(self.mean), "std": list(self.std), "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DataFacts":
        return cls(num_classes=int(raw["num_classes"]), in_chans=int(raw["in_chans"]),
                   image_size=int(raw["image_size"]), mean=tuple(float(v) for v in raw["mean"]),
                   std=tuple(float(v) for v in raw["std"]), classes=[str(c) for c in raw.get("classes", [])])

    @classmethod
    def from_bundle(cls, data: Any) -> "DataFacts":
        """From a :class:`kdlab.data.types.DataBundle` (or anything with the same attributes)."""
        return cls(num_classes=int(data.num_classes), in_chans=int(data.in_chans), image_size=int(data.image_size),
                   mean=tuple(float(v) for v in data.mean), std=tuple(float(v) for v in data.std),
                   classes=[str(c) for c in data.classes])


@dataclass
class LoadedStudent:
    """The student network in eval mode on the CPU, with where it came from and what it expects."""

    model: nn.Module
    config: Config
    checkpoint: Path
    facts: DataFacts
    run_dir: Optional[Path] = None
    epoch: Optional[int] = None  # epochs finished when the checkpoint was written

    @property
    def architecture(self) -> str:
        return str(self.config.model.name)

    def example_input(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """A normalised-looking random batch of the model's input shape (N, C, H, W)."""
        generator = torch.Generator().manual_seed(seed)
        size = self.facts.image_size
        return torch.randn(batch, self.facts.in_chans, size, size, generator=generator)


def resolve_checkpoint(path: str | Path, which: str = DEFAULT_CHECKPOINT) -> tuple[Path, Optional[Path]]:
    """``(checkpoint file, run folder or None)`` for a run folder or a checkpoint file.

    A run folder gives ``checkpoints/<which>.pt`` (``best`` falls back to ``last`` for runs that
    never evaluated); a file inside ``<run>/checkpoints/`` knows its run folder.
    """
    if which not in CHECKPOINT_CHOICES:
        raise ConfigError(f"checkpoint choice {which!r}: expected one of {', '.join(CHECKPOINT_CHOICES)}")
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints"
        for name in (which, "last"):
            candidate = folder / f"{name}.pt"
            if candidate.is_file():
                return candidate, path
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path}: not a kdlab run folder (no config.yaml, no checkpoints/)")
        raise CheckpointError(f"{path}: the run has no checkpoint yet ({folder / (which + '.pt')} is missing)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such run folder or checkpoint file")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file() \
        else None
    return path, run_dir


def _config_of(state: dict[str, Any], checkpoint: Path, run_dir: Optional[Path]) -> Config:
    raw = state.get("config")
    if isinstance(raw, dict):
        try:
            return from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{checkpoint}: the config stored in the checkpoint does not load: {err}") from None
    if run_dir is not None:
        return load_config(run_dir / "config.yaml")
    raise CheckpointError(
        f"{checkpoint}: not a kdlab training checkpoint (no 'config' entry) and no run folder beside it; "
        "export a run folder or a checkpoint that kdlab train wrote"
    )


def _facts_of(state: dict[str, Any], cfg: Config, checkpoint: Path) -> DataFacts:
    raw = state.get("data_facts")
    if isinstance(raw, dict):
        return DataFacts.from_dict(raw)
    from kdlab.data import DataError, build_data

    # a checkpoint older than the recorded facts: the config's dataset says them (it must be readable here)
    try:
        data_cfg = dataclasses.replace(cfg.data, num_workers=0)
        return DataFacts.from_bundle(build_data(data_cfg, seed=cfg.trainer.seed))
    except (DataError, FileNotFoundError, OSError) as err:
        raise CheckpointError(
            f"{checkpoint} predates the input facts kdlab records (classes, resolution, normalisation) and its "
            f"dataset (data.name={cfg.data.name}, data.root={cfg.data.root}) cannot be read here: {err}"
        ) from None


def build_student_network(cfg: Config, facts: DataFacts) -> nn.Module:
    """The student architecture of ``cfg`` for ``facts`` with fresh weights (nothing loaded)."""
    from kdlab.engine import builders

    model_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, checkpoint=None))
    return builders.build_student(model_cfg, facts.num_classes, facts.in_chans)


def load_student(
    path: str | Path, which: str = DEFAULT_CHECKPOINT, *, unsafe_load: bool = False
) -> LoadedStudent:
    """The student of a run folder or kdlab checkpoint, alone, in eval mode on the CPU.

    Raises :class:`~kdlab.config.ConfigError` / :class:`~kdlab.checkpoint_io.CheckpointError`
    with one line naming the file and what is wrong (no config, no student weights, weights that
    do not fit the configured architecture).
    """
    checkpoint, run_dir = resolve_checkpoint(path, which)
    state = load_checkpoint_file(checkpoint, unsafe=unsafe_load)
    cfg = _config_of(state, checkpoint, run_dir)
    if cfg.task != "classification":
        raise UnsupportedTaskError(
            f"{checkpoint}: task {cfg.task!r}: only classification students are supported here yet", cfg.task
        )
    weights = state.get("model")
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{checkpoint}: no student weights (the checkpoint's 'model' entry is missing or empty)")
    facts = _facts_of(state, cfg, checkpoint)
    model = build_student_network(cfg, facts)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{checkpoint}: the student weights do not fit model.name={cfg.model.name}: "
                              f"{str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint}: the student weights do not fit model.name={cfg.model.name}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    model.eval()
    epoch = state.get("epoch")
    return LoadedStudent(model=model, config=cfg, checkpoint=checkpoint, facts=facts, run_dir=run_dir,
                         epoch=int(epoch) if isinstance(epoch, int) else None)


__all__ = [
    "CHECKPOINT_CHOICES",
    "DEFAULT_CHECKPOINT",
    "DataFacts",
    "LoadedStudent",
    "UnsupportedTaskError",
    "build_student_network",
    "load_student",
    "resolve_checkpoint",
]
