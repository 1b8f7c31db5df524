"""``kdlab bench suite --report-only``: the report of the work already finished in ``--out``; nothing trains.

For a suite that was stopped part-way (a cluster job's time limit, a machine handed back), or
whose last seeds are still running elsewhere: the same plan, but each task only reads what an
earlier invocation left. A finished run is in the table as usual; a run that is not finished
(absent, interrupted, or trained from another config) is listed under the report's "Failed or
skipped work" with the reason, and its method's row counts the seeds that did finish (``n``).
The shared work (teacher caches, SSKD's teacher head) is not checked or built: its recorded
timings are reported when an earlier invocation wrote them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from kdlab.benchmarks.suite_runs import (
    PlannedRun,
    is_reusable,
    read_run_times,
    shown_path,
    task_cache,
    task_prerequisites,
    task_pretrained,
    task_run,
)
from kdlab.benchmarks.suite_schedule import Task


class NotFinished(RuntimeError):
    """The report-only form of a task whose work no earlier invocation finished."""


def finished_run(run: PlannedRun) -> dict[str, Any]:
    """The suite's recorded times of a completed run of the planned config, else :class:`NotFinished`."""
    if is_reusable(run):
        return {**read_run_times(run.out_dir), "reused": True}
    if (run.out_dir / "checkpoints" / "last.pt").exists():
        raise NotFinished(f"interrupted, not finished ({shown_path(run.out_dir)}); run the suite again to resume it")
    if run.out_dir.exists():
        raise NotFinished(f"not finished with the planned config ({shown_path(run.out_dir)})")
    raise NotFinished(f"not run yet ({shown_path(run.out_dir)})")


def saved_pretrained(checkpoint: Path, out_file: Path) -> dict[str, Any]:
    """The stored evaluation of the pretrained teacher, else :class:`NotFinished`."""
    try:
        saved = json.loads(out_file.read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("checkpoint") == str(checkpoint):
        return {**saved, "reused": True}
    raise NotFinished(f"the pretrained teacher {shown_path(checkpoint)} was not evaluated yet")


def shared_work_not_checked(kind: str) -> dict[str, Any]:
    """A cache or prerequisite task, which the report does not need: reported as done before (its saved timings)."""
    return {"built": False} if kind == "cache" else {"ran": []}


def report_only_tasks(tasks: Sequence[Task]) -> list[Task]:
    """``tasks`` with each function replaced by its read-only form (same keys, labels and dependencies)."""
    reading = []
    for task in tasks:
        if task.fn is task_run:
            reading.append(replace(task, fn=finished_run, args=(task.args[0],)))
        elif task.fn is task_pretrained:
            config, overrides, checkpoint, out_file = task.args
            reading.append(replace(task, fn=saved_pretrained, args=(checkpoint, out_file)))
        elif task.fn is task_cache:
            reading.append(replace(task, fn=shared_work_not_checked, args=("cache",)))
        elif task.fn is task_prerequisites:
            reading.append(replace(task, fn=shared_work_not_checked, args=("prerequisites",)))
        else:
            raise ValueError(f"task {task.key!r} has no report-only form ({task.fn.__name__})")
    return reading
