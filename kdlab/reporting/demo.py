"""``kdlab demo``: the demo teacher, then one student per method and seed, then a report.

The demo is nothing but the configs in ``configs/demo/`` run one after another with the
trainer, each with a few ``key=value`` overrides (``trainer.out_dir``, ``trainer.seed``,
``trainer.progress``, ``teacher.checkpoint`` and, when asked, ``trainer.epochs``), exactly
what ``kdlab train CONFIG OVERRIDES...`` does. A run whose config asks for kNN, a linear
probe or manifold metrics (``eval.*``) is then evaluated on ``last.pt`` and ``best.pt`` with
:func:`kdlab.engine.report_eval.evaluate_checkpoint` (``eval.json``), as ``kdlab eval`` would.

Layout of the output folder::

    <out>/teacher/                 the teacher run (seed 0)
    <out>/<method>/seed<k>/        one run per method and seed
    <out>/results.json             one row per method (schema: kdlab.reporting.aggregate)
    <out>/report.md                the table and how it was made
    <out>/accuracy.png, training_curves.png, embedding_teacher_vs_coss.png
    <out>/demo.json                what the demo ran (also marks the folder as the demo's)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

import kdlab
from kdlab.reporting.aggregate import RunGroup, add_gains, group_key, summarize
from kdlab.reporting.runs import EVAL_FILE, FINAL_FILE, RunRecord, load_run

TEACHER = "teacher"
BASELINE = "student"
DEFAULT_METHODS = ("student", "kd", "ckd", "dkd", "sskd", "coss", "at", "fitnet")
#: the label-free method whose embedding is drawn next to the teacher's
EMBEDDING_METHOD = "coss"
EMBEDDING_PLOT = "embedding_teacher_vs_coss.png"
MARKER_FILE = "demo.json"
OUTPUT_FILES = ("results.json", "results.csv", "report.md", "accuracy.png", "training_curves.png", EMBEDDING_PLOT)

Echo = Callable[[str], None]


class DemoError(ValueError):
    """The demo cannot start (missing config, foreign output folder, bad option); the message says why."""


class DemoInterrupted(RuntimeError):
    """A run stopped before completing (signal, time limit); the demo stops there."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def default_config_dir() -> Path:
    """``configs/demo`` of the kdlab checkout (beside the package), else of the working directory."""
    beside_package = Path(kdlab.__file__).resolve().parents[1] / "configs" / "demo"
    if beside_package.is_dir():
        return beside_package
    return Path("configs") / "demo"


@dataclass
class DemoOptions:
    """What ``kdlab demo`` runs; the defaults are the full demo."""

    out_dir: Path = Path("runs/demo")
    seeds: int = 3
    epochs: Optional[int] = None  # None: the configs' own epochs
    methods: tuple[str, ...] = DEFAULT_METHODS
    config_dir: Optional[Path] = None
    teacher: Optional[Path] = None  # a trained teacher run folder to use instead of training one
    reuse: bool = False  # keep completed runs whose config matches, resume interrupted ones
    verbose: bool = False  # the trainer's per-epoch lines
    threads: Optional[int] = 1  # torch CPU threads while the demo runs; None: leave as is
    embedding_plot: bool = True
    command: str = "kdlab demo"

    def validate(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise DemoError(f"--seeds must be a positive integer, got {self.seeds!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1):
            raise DemoError(f"--epochs must be a positive integer, got {self.epochs!r}")
        if self.threads is not None and self.threads < 1:
            raise DemoError(f"--threads must be a positive integer, got {self.threads!r}")
        if not self.methods:
            raise DemoError("--methods is empty: name at least one method, e.g. student kd")
        if TEACHER in self.methods:
            raise DemoError(f"--methods: {TEACHER!r} is always trained first; list only student methods")
        duplicates = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if duplicates:
            raise DemoError(f"--methods lists {duplicates} more than once")


@dataclass
class PlannedRun:
    """One ``kdlab train`` invocation of the demo."""

    method: str
    seed: int
    config_path: Path
    out_dir: Path
    overrides: list[str]

    def command(self) -> str:
        """The equivalent ``kdlab train`` command line (display-only overrides left out)."""
        shown = [o for o in self.overrides if not o.startswith("trainer.progress=")]
        return " ".join(["kdlab train", _shown(self.config_path), *shown])


@dataclass
class RunOutcome:
    run: PlannedRun
    record: RunRecord
    wall_seconds: Optional[float]  # None when a completed run was reused
    reused: bool = False


@dataclass
class DemoResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: the cost on an idle machine, whatever the load
    load_average: Optional[float] = None  # 1-minute load average at the end (other work on the machine)
    files: list[Path] = field(default_factory=list)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter, copy-pasteable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def plan_runs(options: DemoOptions) -> list[PlannedRun]:
    """The teacher (unless given) then every method for seed 0, every method for seed 1, ...

    Seeds outermost: an interrupted demo has complete comparisons for the first seeds.
    """
    config_dir = Path(options.config_dir) if options.config_dir else default_config_dir()
    names = ([] if options.teacher else [TEACHER]) + list(options.methods)
    missing = [name for name in names if not (config_dir / f"{name}.yaml").is_file()]
    if missing:
        raise DemoError(
            f"no demo config for {', '.join(missing)} in {config_dir} (expected "
            f"{', '.join(f'{m}.yaml' for m in missing)}); pick others with --methods or point --configs at them"
        )
    out = Path(options.out_dir)
    teacher_dir = Path(options.teacher) if options.teacher else out / TEACHER
    common = ["trainer.progress=" + _trainer_progress(options.verbose)]
    if options.epochs is not None:
        common.append(f"trainer.epochs={options.epochs}")
    plan: list[PlannedRun] = []
    if not options.teacher:
        plan.append(
            PlannedRun(TEACHER, 0, config_dir / f"{TEACHER}.yaml", teacher_dir,
                       [f"trainer.out_dir={teacher_dir}", "trainer.seed=0", *common])
        )
    for seed in range(options.seeds):
        for method in options.methods:
            run_dir = out / method / f"seed{seed}"
            overrides = [f"trainer.out_dir={run_dir}", f"trainer.seed={seed}", *common]
            if _distils(config_dir / f"{method}.yaml"):
                overrides.append(f"teacher.checkpoint={teacher_dir}")
            plan.append(PlannedRun(method, seed, config_dir / f"{method}.yaml", run_dir, overrides))
    return plan


def _trainer_progress(verbose: bool) -> str:
    if verbose:
        return "lines"
    return "bar" if sys.stdout.isatty() else "none"


def _distils(config_path: Path) -> bool:
    """Whether the config has a teacher (then the demo points it at the demo's teacher)."""
    from kdlab.config import load_config

    teacher = load_config(config_path).teacher
    return teacher.name is not None or teacher.checkpoint is not None


def check_configs(plan: Sequence[PlannedRun]) -> None:
    """Load and validate every config with its overrides before anything trains."""
    from kdlab.config import load_config

    for run in plan:
        load_config(run.config_path, run.overrides)


# ------------------------------------------------------------------ the output folder
def prepare_out_dir(options: DemoOptions) -> None:
    """Start clean (the demo's own files only) unless ``reuse``; refuse folders the demo did not write."""
    out = Path(options.out_dir)
    if not out.exists():
        return
    if not out.is_dir():
        raise DemoError(f"--out {out} exists and is not a folder")
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
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _write_marker(options: DemoOptions, extra: dict[str, Any]) -> None:
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
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


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
        record = load_run(run.out_dir)
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
    (run_dir / EVAL_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
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


def progress_line(index: int, total: int, outcome: RunOutcome) -> str:
    """``[7/25] kd seed 1: top-1 93.1% (4.2s)``."""
    from kdlab.reporting.aggregate import run_accuracy

    accuracy = run_accuracy(outcome.record)
    head = f"[{index}/{total}] {outcome.run.method} seed {outcome.run.seed}: "
    if accuracy["final"] is None:
        score = "no top-1 recorded"
    elif accuracy["metric"] == "linear_top1":
        knn = outcome.record.metrics[-1].get("val_top1") if outcome.record.metrics else None
        score = f"linear-probe top-1 {accuracy['final']:.1f}%" + (f" (kNN {knn:.1f}%)" if isinstance(knn, float) else "")
    else:
        score = f"top-1 {accuracy['final']:.1f}%"
    when = "reused" if outcome.reused else f"{outcome.wall_seconds:.1f}s"
    return f"{head}{score} ({when})"


def summarize_outcomes(outcomes: Sequence[RunOutcome]) -> list[dict[str, Any]]:
    """One row per method in run order (teacher first), with gains over the plain student."""
    by_method: dict[str, list[RunOutcome]] = {}
    for outcome in outcomes:
        by_method.setdefault(outcome.run.method, []).append(outcome)
    rows = []
    for method, members in by_method.items():
        row = summarize(RunGroup(method, [m.record for m in members]))
        walls = [m.wall_seconds for m in members if m.wall_seconds is not None]
        row["wall_seconds_mean"] = sum(walls) / len(walls) if walls else None
        first = members[0].run
        row["config"] = _shown(first.config_path) if first.config_path.suffix == ".yaml" else None
        row["command"] = first.command() if first.overrides else None
        rows.append(row)
    if any(row["method"] == BASELINE for row in rows):
        add_gains(rows, BASELINE)
    return rows


def _given_teacher(path: Path) -> RunOutcome:
    if not (path / FINAL_FILE).is_file():
        raise DemoError(f"--teacher {path}: not a completed run folder (no {FINAL_FILE})")
    record = load_run(path)
    return RunOutcome(PlannedRun(TEACHER, record.seed or 0, path, path, []), record, None, reused=True)


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not available on this platform
        return None


def run_demo(options: DemoOptions, echo: Echo = print) -> DemoResult:
    """Run the whole demo and write results.json, report.md and the figures into ``options.out_dir``."""
    import torch

    from kdlab.reporting.demo_output import write_outputs

    options.validate()
    plan = plan_runs(options)
    check_configs(plan)
    outcomes: list[RunOutcome] = [_given_teacher(Path(options.teacher))] if options.teacher else []
    prepare_out_dir(options)
    started_at = datetime.now(timezone.utc)
    _write_marker(options, {"started": started_at.isoformat(timespec="seconds")})
    previous_threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    echo(
        f"kdlab demo: {len(plan)} runs ({'' if options.teacher else 'teacher + '}{len(options.methods)} "
        f"method(s) x {options.seeds} seed(s)) into {options.out_dir}; torch threads {torch.get_num_threads()}"
    )
    clock, cpu_clock = time.monotonic(), time.process_time()
    reuse_distilled = options.reuse
    plotted = False
    try:
        for index, run in enumerate(plan, start=1):
            plot = None
            if options.embedding_plot and run.method == EMBEDDING_METHOD and not plotted:
                plot, plotted = Path(options.out_dir) / EMBEDDING_PLOT, True
            distils = any(o.startswith("teacher.checkpoint=") for o in run.overrides)
            outcome = execute(run, reuse=reuse_distilled if distils else options.reuse, plot_path=plot)
            if run.method == TEACHER and not outcome.reused:
                reuse_distilled = False  # a new teacher: students of the old one are stale
            outcomes.append(outcome)
            echo(progress_line(index, len(plan), outcome))
    finally:
        torch.set_num_threads(previous_threads)
    seconds, cpu_seconds = time.monotonic() - clock, time.process_time() - cpu_clock
    rows = summarize_outcomes(outcomes)
    result = DemoResult(Path(options.out_dir), rows, outcomes, seconds, cpu_seconds, _load_average())
    result.files = write_outputs(result, options, plan, started_at)
    _write_marker(
        options,
        {"started": started_at.isoformat(timespec="seconds"), "finished": True, "seconds": round(seconds, 1),
         "cpu_seconds": round(cpu_seconds, 1), "load_average": result.load_average,
         "runs": [str(run.out_dir) for run in plan]},
    )
    return result
