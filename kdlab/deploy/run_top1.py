"""The top-1 a kdlab run recorded for one of its checkpoints, for ``kdlab profile``.

A checkpoint inside ``<run>/checkpoints/`` belongs to that run; the run's ``metrics.jsonl`` has
one row per evaluated epoch, and the checkpoint records how many epochs were done when it was
written (``epoch``), so the top-1 *of these weights* is the row of that epoch: for ``best.pt``
the best evaluated epoch, for ``last.pt`` the final one. Label-free runs are scored by their
linear probe in ``eval.json`` (``best`` for best.pt, ``last`` otherwise), as ``kdlab report`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch


@dataclass(frozen=True)
class RunTop1:
    """The top-1 (%) of a checkpoint's weights, the run's final and best, and where they come from."""

    top1: Optional[float]
    final: Optional[float]
    best: Optional[float]
    metric: str
    run_dir: Path
    source: str
    data_name: Optional[str] = None  # data.name of the run (where the top-1 was measured)

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "top1_final": self.final, "top1_best": self.best, "top1_metric": self.metric,
                "top1_source": self.source}


def run_folder_of(checkpoint: str | Path) -> Optional[Path]:
    """``<run>`` for ``<run>/checkpoints/<name>.pt`` when ``<run>`` holds a metrics.jsonl, else None."""
    from kdlab.reporting.runs import METRICS_FILE

    path = Path(checkpoint)
    if path.is_dir():  # a run folder given as the checkpoint (teacher.checkpoint may be one)
        return path if (path / METRICS_FILE).is_file() else None
    run = path.parent.parent
    return run if path.parent.name == "checkpoints" and (run / METRICS_FILE).is_file() else None


def checkpoint_epoch(checkpoint: str | Path) -> Optional[int]:
    """The ``epoch`` entry (epochs done) of a kdlab checkpoint, read without unpickling; None if absent."""
    try:
        state = torch.load(Path(checkpoint), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a (memory-mappable) kdlab checkpoint: no epoch to match
        return None
    epoch = state.get("epoch") if isinstance(state, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def top1_of_checkpoint(checkpoint: str | Path, epoch: Optional[int] = None) -> Optional[RunTop1]:
    """What the checkpoint's run recorded for it, or None when the checkpoint is not in a run folder."""
    from kdlab.reporting.aggregate import run_accuracy
    from kdlab.reporting.runs import load_run, number

    checkpoint = Path(checkpoint)
    run_dir = run_folder_of(checkpoint)
    if run_dir is None:
        return None
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / ("best.pt" if (checkpoint / "checkpoints" / "best.pt").is_file()
                                                   else "last.pt")
    record = load_run(run_dir)
    accuracy = run_accuracy(record)
    data_name = record.config.get("data", {}).get("name")
    final, best, metric = accuracy["final"], accuracy["best"], accuracy["metric"]
    is_best = checkpoint.name == "best.pt"
    if metric == "linear_top1":
        value = number(record.evaluation.get("best" if is_best else "last", {}).get("linear_top1"))
        return RunTop1(value, final, best, metric, run_dir,
                       f"linear probe of {checkpoint.name} in {run_dir / 'eval.json'}", data_name)
    epoch = checkpoint_epoch(checkpoint) if epoch is None else epoch
    if epoch is not None:
        for row in record.metrics:
            if row.get("epoch") == epoch - 1 and number(row.get("val_top1")) is not None:
                return RunTop1(number(row["val_top1"]), final, best, metric, run_dir,
                               f"val_top1 of epoch {epoch} in {run_dir / 'metrics.jsonl'}", data_name)
    # no row for the checkpoint's epoch (not evaluated then, or no epoch recorded): by the file's name
    value, which = (best, "best") if is_best else (final, "final")
    return RunTop1(value, final, best, metric, run_dir,
                   f"{which} val_top1 in {run_dir / 'metrics.jsonl'} ({checkpoint.name})", data_name)


__all__ = ["RunTop1", "checkpoint_epoch", "run_folder_of", "top1_of_checkpoint"]
