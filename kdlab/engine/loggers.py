"""Where a run's numbers go besides ``metrics.jsonl``: TensorBoard, a CSV copy, Weights & Biases.

``metrics.jsonl`` stays the source of truth (reports read it); the backends here are views of the
same numbers for people watching a run. Asked for in ``logging.*``, each is checked when the
:class:`~kdlab.engine.trainer.Trainer` is built: a backend whose package is missing is a
:class:`~kdlab.config.ConfigError` naming the extra to install, never a silent no-op. Only rank 0
writes; the other ranks hold an empty :class:`RunLoggers` whose calls do nothing (and read no
tensor, so they add no host sync and enter no collective).

What is written (docs/logging.md):

* every ``trainer.log_every`` steps: ``train/loss``, ``train/<term>`` for every loss term and
  ``train/lr``, at the global step (rank 0's batch under DDP);
* at the end of every epoch: ``epoch/<key>`` for every numeric value of the epoch's
  ``metrics.jsonl`` row (``train_*`` means over all ranks, ``val_*`` metrics, ``lr``, ``seconds``...),
  at the global step the epoch ended on, so both families share one x axis.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import secrets
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Mapping, Optional, Protocol

import torch

from kdlab.checkpoint_io import atomic_write_text, check_output_file
from kdlab.config import Config, ConfigError, to_dict

#: the run-folder subfolder of TensorBoard's event files (``tensorboard --logdir RUN_DIR/tensorboard``)
TENSORBOARD_DIR = "tensorboard"
#: the CSV copy of ``metrics.jsonl``, beside it
CSV_NAME = "metrics.csv"
#: the W&B run id of this run folder: a resumed process continues the same W&B run
WANDB_ID_FILE = "wandb_run_id.txt"


def _require(module: str, asked_by: str, extra: str) -> ModuleType:
    """Import ``module`` or raise the one-line error that names the kdlab extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"{asked_by} needs the {extra} package: pip install 'kdlab[{extra}]' (import failed: {err})"
        ) from None


class ScalarBackend(Protocol):
    """A destination of named scalars at global steps."""

    def log(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TensorBoardBackend:
    """Event files in ``RUN_DIR/tensorboard``.

    Opened with ``purge_step=continue_from + 1``: TensorBoard then hides every event a previous
    process wrote after the checkpoint this one continues from (steps it will write again), so a
    resumed run shows each step once. Steps up to ``continue_from`` were written before that
    checkpoint and are kept.
    """

    def __init__(self, summary_writer: type, folder: Path, continue_from: int) -> None:
        self.writer = summary_writer(log_dir=str(folder), purge_step=continue_from + 1)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    """One W&B run per run folder (its id kept in ``RUN_DIR/wandb_run_id.txt``, W&B's files in ``RUN_DIR/wandb``).

    A resumed process continues the same W&B run (``resume="allow"``). W&B never rewinds a run:
    steps an interrupted process logged after its checkpoint keep their first values and W&B
    ignores the repeated ones.
    """

    def __init__(self, wandb: ModuleType, settings: Mapping[str, Any], out_dir: Path, config: dict[str, Any]) -> None:
        id_file = check_output_file(out_dir / WANDB_ID_FILE, "the W&B run id file")  # a pipe would block the read
        run_id = id_file.read_text().strip() if id_file.exists() else ""
        if not run_id:
            run_id = secrets.token_hex(4)
            atomic_write_text(id_file, run_id + "\n", what="the W&B run id file")
        self.run = wandb.init(
            project=settings["project"],
            name=settings.get("name") or out_dir.resolve().name,
            mode=settings["mode"],
            dir=str(out_dir),
            config=config,
            id=run_id,
            resume="allow",
        )

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def flush(self) -> None:
        """W&B sends in the background; nothing to push."""

    def close(self) -> None:
        self.run.finish()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def write_csv_mirror(jsonl_path: Path, csv_path: Path) -> None:
    """Rewrite ``csv_path`` from ``jsonl_path``: one row per line, columns the union of keys (first-seen order).

    Rewritten whole from the JSONL (not appended), so it always equals it: a resumed run, whose
    ``metrics.jsonl`` lost the epochs it redoes, never shows a row twice.
    """
    check_output_file(csv_path, "the metrics CSV")  # a device or pipe there is never removed or replaced
    if not jsonl_path.exists():
        csv_path.unlink(missing_ok=True)
        return
    rows = [json.loads(line) for line in jsonl_path.read_text().splitlines() if line.strip()]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    atomic_write_text(csv_path, text.getvalue(), what="the metrics CSV")


def _epoch_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """``epoch/<key>`` for every numeric (not boolean) value of an epoch row."""
    return {
        f"epoch/{key}": float(value)
        for key, value in row.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def _step_scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """``train/<name>`` of each value; the 0-d tensors are read to the host in one transfer."""
    tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
    read = torch.stack([v.detach().float().reshape(()) for v in tensors.values()]).tolist() if tensors else []
    numbers = dict(zip(tensors, read))
    for key, value in values.items():
        if key not in numbers:
            numbers[key] = float(value)
    return {f"train/{key}": numbers[key] for key in values}


class RunLoggers:
    """The logging backends of one run, called by the trainer at a few points.

    ``start(global_step)`` once the run folder exists (and any checkpoint is restored),
    ``log_step`` every ``trainer.log_every`` steps, ``log_epoch`` after each ``metrics.jsonl`` row,
    ``close`` at the end (also as a context manager: ``with loggers.start(step): ...``).
    """

    def __init__(self, cfg: Config, out_dir: Path, *, is_main: bool) -> None:
        """Check that every backend ``cfg.logging`` asks for is installed (on every rank: all fail alike)."""
        logging_cfg = cfg.logging
        self.cfg = cfg
        self.out_dir = out_dir
        self.is_main = is_main
        self._summary_writer: Optional[type] = None
        self._wandb: Optional[ModuleType] = None
        self.csv = bool(logging_cfg.csv)
        self.wandb_settings: dict[str, Any] = dict(logging_cfg.wandb or {})
        if logging_cfg.tensorboard:
            self._summary_writer = _require(
                "torch.utils.tensorboard", "logging.tensorboard: true", "tensorboard"
            ).SummaryWriter
        if self.wandb_settings:
            self._wandb = _require("wandb", "logging.wandb", "wandb")
        self.backends: list[ScalarBackend] = []

    @property
    def active(self) -> bool:
        """Whether this process writes anything (rank 0 with at least one backend open)."""
        return bool(self.backends) or (self.is_main and self.csv)

    def start(self, global_step: int) -> "RunLoggers":
        """Open the backends (rank 0) for a run continuing after ``global_step`` (0: a fresh run)."""
        if not self.is_main:
            return self
        if self._summary_writer is not None:
            self.backends.append(
                TensorBoardBackend(self._summary_writer, self.out_dir / TENSORBOARD_DIR, global_step)
            )
        if self._wandb is not None:
            self.backends.append(WandbBackend(self._wandb, self.wandb_settings, self.out_dir, to_dict(self.cfg)))
        if self.csv:
            write_csv_mirror(self.out_dir / "metrics.jsonl", self.out_dir / CSV_NAME)
        return self

    def log_step(self, step: int, values: Mapping[str, Any]) -> None:
        """Training values of one step (0-d tensors or numbers) as ``train/<name>`` at ``step``."""
        if not self.backends:
            return
        scalars = _step_scalars(values)
        for backend in self.backends:
            backend.log(step, scalars)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """An epoch's ``metrics.jsonl`` row (already appended) as ``epoch/<key>`` at its ``steps``."""
        if not self.is_main:
            return
        if self.csv:
            write_csv_mirror(self.out_dir / "metrics.jsonl", self.out_dir / CSV_NAME)
        if not self.backends:
            return
        scalars = _epoch_scalars(row)
        step = int(row["steps"])
        for backend in self.backends:
            backend.log(step, scalars)
            backend.flush()

    def close(self) -> None:
        """Flush and close every backend; safe to call twice."""
        backends, self.backends = self.backends, []
        for backend in backends:
            backend.close()

    def __enter__(self) -> "RunLoggers":
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


__all__ = [
    "CSV_NAME",
    "RunLoggers",
    "TENSORBOARD_DIR",
    "TensorBoardBackend",
    "WANDB_ID_FILE",
    "WandbBackend",
    "write_csv_mirror",
]
