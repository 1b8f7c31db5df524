"""Running the demo's planned runs: the output folder, reuse / resume, training and evaluation."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

import kdlab
from kdlab.reporting.aggregate import group_key
from kdlab.reporting.demo_plan import (
    DEFAULT_METHODS,
    MARKER_FILE,
    OUTPUT_FILES,
    TEACHER,
    DemoError,
    DemoOptions,
    PlannedRun,
)
from kdlab.reporting.runs import EVAL_FILE, FINAL_FILE, RunRecord, load_run, read_run_config


class DemoInterrupted(RuntimeError):
    """A run stopped before completing (signal, time limit); the demo stops there."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOutcome:
    run: PlannedRun
    record: RunRecord
    wall_seconds: Optional[float]  # None when a completed run was reused
    reused: bool = False


# ------------------------------------------------------------------ the output folder
def prepare_out_dir(options: DemoOptions) -> None:
    """Start clean (the demo's own files only) unless ``reuse``; refuse folders the demo did not write."""
    from kdlab.checkpoint_io import check_output_file, check_output_folder  # here: the CLI parser imports no torch

    out = Path(options.out_dir)
    check_output_folder(out, "--out")  # a file, device or pipe there is refused, never replaced
    if not out.exists():
        return
    if not any(out.iterdir()):
        return
    if not (out / MARKER_FILE).is_file():
        raise DemoError(
            f"--out {out} is not empty and was not written by kdlab demo (no {MARKER_FILE}); "
            "choose a new or empty folder"
        )
    if options.reuse:
        return
    keep = Path(options.teacher).resolve() if options.teacher else None
    names = {TEACHER, *DEFAULT_METHODS, *options.methods, *OUTPUT_FILES, MARKER_FILE}
    for name in sorted(names):
        path = out / name
        if keep is not None and (path.resolve() == keep or path.resolve() in keep.parents):
            continue  # the teacher the user asked to reuse lives here
        if path.is_symlink():
            path.unlink()  # the link itself; what it points to is not the demo's
        elif path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            check_output_file(path, "--out")  # a device, pipe or socket named like an output: refused, kept
            path.unlink()


def write_marker(options: DemoOptions, extra: dict[str, Any]) -> None:
    """``demo.json``: what the demo ran; its presence marks the folder as the demo's to clear."""
    from kdlab.checkpoint_io import atomic_write_text

    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marker = {
        "tool": "kdlab demo",
        "kdlab_version": kdlab.__version__,
        "command": options.command,
        "seeds": options.seeds,
        "epochs": options.epochs,
        "methods": list(options.methods),
        "teacher": str(options.teacher) if options.teacher else None,
        **extra,
    }
    atomic_write_text(out / MARKER_FILE, json.dumps(marker, indent=2) + "\n")


# ------------------------------------------------------------------ running
def _planned_config(run: PlannedRun) -> Any:
    from kdlab.config import load_config
    from kdlab.engine import builders

    # the trainer records the config with the data views its terms need; compare like with like
    return builders.with_views(load_config(run.config_path, run.overrides))


def _matches_plan(run: PlannedRun) -> bool:
    """The run folder holds a run of the planned config and seed (operational keys aside)."""
    from kdlab.config import dump_yaml

    try:
        # config.yaml only: a run stopped in its first epoch has no metrics.jsonl yet
        record = RunRecord(run.out_dir, read_run_config(run.out_dir), [])
    except (ValueError, OSError):
        return False
    planned = RunRecord(run.out_dir, yaml.safe_load(dump_yaml(_planned_config(run))), [])
    return group_key(record) == group_key(planned) and record.seed == run.seed


def _is_reusable(run: PlannedRun) -> bool:
    """A completed run of the planned config and, if its config asks for one, its eval.json."""
    if not (run.out_dir / FINAL_FILE).is_file() or not _matches_plan(run):
        return False
    needs_eval = _wants_evaluation(_planned_config(run))
    return load_run(run.out_dir).completed and (not needs_eval or (run.out_dir / EVAL_FILE).is_file())


def _wants_evaluation(cfg: Any) -> bool:
    return bool(cfg.eval.knn or cfg.eval.linear_probe or cfg.eval.manifold)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_run(cfg: Any, run_dir: Path, plot_path: Optional[Path] = None) -> dict[str, dict[str, Any]]:
    """kNN / linear probe / manifold metrics of last.pt and best.pt, written to ``eval.json``.

    Manifold metrics are added whenever the run has a teacher (they compare with it).
    """
    from kdlab.checkpoint_io import atomic_write_text
    from kdlab.engine.report_eval import evaluate_checkpoint

    has_teacher = cfg.teacher.name is not None or cfg.teacher.checkpoint is not None
    options = dict(knn=cfg.eval.knn, linear_probe=cfg.eval.linear_probe, manifold=cfg.eval.manifold or has_teacher)
    checkpoints = run_dir / "checkpoints"
    last, best = checkpoints / "last.pt", checkpoints / "best.pt"
    results = {"last": evaluate_checkpoint(cfg, str(last), plot_path=str(plot_path) if plot_path else None, **options)}
    if best.is_file() and _file_digest(best) != _file_digest(last):
        results["best"] = evaluate_checkpoint(cfg, str(best), **options)
    else:
        results["best"] = dict(results["last"], checkpoint=str(best))
    atomic_write_text(run_dir / EVAL_FILE, json.dumps(results, indent=2, default=str) + "\n")
    return results


def execute(run: PlannedRun, *, reuse: bool = False, plot_path: Optional[Path] = None) -> RunOutcome:
    """Train one planned run (or, with ``reuse``, keep / resume it) and evaluate it if its config asks.

    Without ``reuse`` an existing run folder is deleted first: the trainer appends to
    metrics.jsonl, so a stale one would mix two runs.
    """
    from kdlab.config import load_config
    from kdlab.engine.trainer import Trainer

    if reuse and _is_reusable(run):
        return RunOutcome(run, load_run(run.out_dir), None, reused=True)
    started = time.monotonic()
    resume = None
    if run.out_dir.exists():
        interrupted = (run.out_dir / "checkpoints" / "last.pt").exists() and not (run.out_dir / FINAL_FILE).exists()
        if reuse and interrupted and _matches_plan(run):
            resume = "auto"  # an interrupted run of the same config: the trainer continues it exactly
        else:
            shutil.rmtree(run.out_dir)
    cfg = load_config(run.config_path, run.overrides)
    result = Trainer(cfg).fit(resume=resume)
    if not result.completed:
        raise DemoInterrupted(
            f"{run.method} seed {run.seed} stopped before completing ({run.out_dir}); "
            "run the demo again with --reuse to continue from there",
            result.exit_code or 1,
        )
    if _wants_evaluation(cfg):
        evaluate_run(cfg, run.out_dir, plot_path)
    return RunOutcome(run, load_run(run.out_dir), time.monotonic() - started)
