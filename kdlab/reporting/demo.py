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
    <out>/<method>/seed<k>/profile.json  ``kdlab profile`` of the best distilled run beside the teacher
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from kdlab.reporting.aggregate import RunGroup, add_gains, group_key, run_accuracy, summarize
from kdlab.reporting.demo_exec import (
    DemoInterrupted,
    RunOutcome,
    execute,
    prepare_out_dir,
    write_marker,
)
from kdlab.reporting.demo_plan import (
    BASELINE,
    DEFAULT_METHODS,
    EMBEDDING_METHOD,
    EMBEDDING_PLOT,
    TEACHER,
    DemoError,
    DemoOptions,
    PlannedRun,
    check_configs,
    plan_runs,
    shown_path,
)
from kdlab.reporting.runs import FINAL_FILE, RunFolderError, load_run

__all__ = [
    "BASELINE",
    "DEFAULT_METHODS",
    "DemoError",
    "DemoInterrupted",
    "DemoOptions",
    "DemoResult",
    "PlannedRun",
    "RunOutcome",
    "plan_runs",
    "prepare_out_dir",
    "profile_best_student",
    "run_demo",
]

Echo = Callable[[str], None]

#: the latency settings (kdlab.deploy.measure.TimingSettings) of the demo's closing profile: a few
#: forwards of the tiny digits networks
DEMO_PROFILE = {"threads": 1, "warmup": 2, "repeats": 5, "max_seconds": 0.5, "batch_size": 64}


@dataclass
class DemoResult:
    """The rows of results.json, every run's outcome, the time taken and the files written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time: the cost on an idle machine, whatever the load
    load_average: Optional[float] = None  # 1-minute load average at the end (other work on the machine)
    files: list[Path] = field(default_factory=list)
    #: the closing ``kdlab profile`` line (the best distilled student beside the teacher), or why there is none
    profile_line: Optional[str] = None


def progress_line(index: int, total: int, outcome: RunOutcome) -> str:
    """``[7/25] kd seed 1: top-1 93.1% (4.2s)``."""
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
        if len({group_key(m.record) for m in members}) > 1:
            # e.g. the config file was edited while the demo ran: the seeds are not one experiment
            row["warning"] = f"the {method} runs used different configs; compare their config.yaml files"
        walls = [m.wall_seconds for m in members if m.wall_seconds is not None]
        row["wall_seconds_mean"] = sum(walls) / len(walls) if walls else None
        first = members[0].run
        row["config"] = shown_path(first.config_path) if first.config_path.suffix == ".yaml" else None
        row["command"] = first.command() if first.overrides else None
        rows.append(row)
    if any(row["method"] == BASELINE for row in rows):
        add_gains(rows, BASELINE)
    return rows


def profile_best_student(outcomes: Sequence[RunOutcome]) -> Optional[str]:
    """Profile the distilled run with the highest final top-1 beside its teacher; the line to print.

    A handful of timed forwards (:data:`DEMO_PROFILE`): well under a second for the demo's networks.
    The profile is written to that run's profile.json and set on its record, so results.json,
    report.md and ``kdlab report`` show it. None when no distilled run was made; a line saying why
    when the profile cannot be measured (the demo's results stand without it).
    """
    from kdlab.checkpoint_io import CheckpointError
    from kdlab.config import ConfigError
    from kdlab.deploy.measure import TimingSettings
    from kdlab.deploy.profile import profile_run, write_profile
    from kdlab.reporting.demo_output import profile_line

    distilled = [o for o in outcomes if o.run.method not in (TEACHER, BASELINE)
                 and (o.record.config.get("teacher", {}).get("checkpoint") or o.record.config.get("teachers"))]
    scored = [(run_accuracy(o.record)["final"], -i, o) for i, o in enumerate(distilled)]
    scored = [entry for entry in scored if entry[0] is not None]
    if not scored:
        return None
    _, _, best = max(scored, key=lambda entry: entry[:2])
    try:
        profile = profile_run(best.record.path, settings=TimingSettings(**DEMO_PROFILE))
        write_profile(profile, best.record.path)
    except (ConfigError, CheckpointError, FileNotFoundError, RunFolderError) as err:
        return f"profile of {best.run.method} seed {best.run.seed}: not measured ({err})"
    best.record.profile = profile
    return profile_line(best.run.method, best.run.seed, best.record.path, profile)


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
    write_marker(options, {"started": started_at.isoformat(timespec="seconds")})
    # the configs set trainer.num_threads, which the trainer applies process-wide; restore it afterwards
    previous_threads = torch.get_num_threads()
    echo(
        f"kdlab demo: {len(plan)} runs ({'' if options.teacher else 'teacher + '}{len(options.methods)} "
        f"method(s) x {options.seeds} seed(s)) into {options.out_dir}"
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
    profile = profile_best_student(outcomes)  # before the rows: they carry the profile
    rows = summarize_outcomes(outcomes)
    result = DemoResult(Path(options.out_dir), rows, outcomes, seconds, cpu_seconds, _load_average(),
                        profile_line=profile)
    result.files = write_outputs(result, options, plan, started_at)
    write_marker(
        options,
        {"started": started_at.isoformat(timespec="seconds"), "finished": True, "seconds": round(seconds, 1),
         "cpu_seconds": round(cpu_seconds, 1), "load_average": result.load_average,
         "runs": [str(run.out_dir) for run in plan]},
    )
    return result
