"""Hand-written run folders, shaped like the trainer's, for the reporting tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest
import yaml

from kdlab.config import load_config, to_dict


def write_run(
    path: Path,
    top1: Sequence[float],
    *,
    seed: int = 0,
    overrides: Sequence[str] = (),
    completed: bool = True,
    seconds: float = 2.0,
    extra_rows: Optional[dict[str, Sequence[float]]] = None,
    evaluation: Optional[dict[str, Any]] = None,
    epochs: Optional[int] = None,
) -> Path:
    """A run folder with one metrics.jsonl row per value of ``top1`` (val_top1 by epoch)."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [f"trainer.seed={seed}", f"trainer.out_dir={path}", f"trainer.epochs={epochs or len(top1)}", *overrides])
    (path / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    rows = []
    for epoch, value in enumerate(top1):
        row = {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_top1": value, "val_top5": 100.0,
               "lr": 0.1, "seconds": seconds / len(top1), "steps": 10 * (epoch + 1)}
        for key, values in (extra_rows or {}).items():
            row[key] = values[epoch]
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if completed:
        final = {"completed": True, "epochs": epochs or len(top1), "best_metric": "val_top1", "best": max(top1),
                 "final": rows[-1], "train_seconds": seconds}
        (path / "final.json").write_text(json.dumps(final))
    if evaluation is not None:
        (path / "eval.json").write_text(json.dumps(evaluation))
    return path


@pytest.fixture
def make_run():
    return write_run
