"""``kdlab bench suite --report-only --previous RESULTS.json``: rows an earlier invocation measured, carried over.

A full suite may take longer than one machine is held (a cluster job's time limit, a session's
hours), and its run folders may not outlive the machine. ``--previous`` lets the report of the
runs finished in ``--out`` keep the rows of an earlier ``results.json`` (the suite's own output,
or the ``docs/benchmarks.json`` it wrote) for the methods that have no finished run there. Each
carried row is the earlier row unchanged except for its gain, recomputed against the baseline row
of this report, and it says where it came from (``carried_from``); the Markdown table marks it
with :data:`CARRIED_MARK`. A row is carried only when the earlier one was measured from the same
config file with the same loss terms, model and number of epochs as the planned runs; otherwise the
method's unfinished runs stay listed as usual. Suites with pairs do not take ``--previous``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from kdlab.benchmarks.suite_values import SuiteError

if TYPE_CHECKING:
    from kdlab.benchmarks.suite_plan import SuitePlan

#: how the Markdown results table marks a carried row
CARRIED_MARK = "†"


def load_previous_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of an earlier ``results.json`` by method; SuiteError naming the file when it is not one."""
    try:
        rows = json.loads(Path(path).read_text())
    except OSError as error:
        raise SuiteError(f"--previous {path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:
        raise SuiteError(f"--previous {path}: not JSON ({error})") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and isinstance(row.get("method"), str)
                                             for row in rows):
        raise SuiteError(f"--previous {path}: not a suite's results.json (a list of rows, each with a 'method')")
    if any(row.get("pair") for row in rows):
        raise SuiteError(f"--previous {path}: rows of a suite with pairs; --previous takes a single-pair suite's rows")
    return {row["method"]: row for row in rows}


def _planned_identity(plan: "SuitePlan", method: str) -> Optional[dict[str, Any]]:
    """config path, loss terms, model and epochs of the method's first planned run, as the rows state them."""
    from kdlab.benchmarks.suite_report import _relative
    from kdlab.config import load_config, to_dict
    from kdlab.reporting.aggregate import describe_terms

    run = next((run for run in plan.runs if run.method == method), None)
    if run is None:
        return None
    config = to_dict(load_config(run.config, run.overrides))
    return {
        "config": _relative(run.config),
        "terms": describe_terms(config),
        "model": config.get("model", {}).get("name"),
        "epochs": config.get("trainer", {}).get("epochs"),
    }


def carry_mismatch(previous: dict[str, Any], planned: dict[str, Any]) -> Optional[str]:
    """Why an earlier row does not stand for the planned runs (None: it does)."""
    for key, value in planned.items():
        if previous.get(key) != value:
            return f"its {key} was {previous.get(key)!r}, the planned runs have {value!r}"
    return None


def carry_previous_rows(
    plan: "SuitePlan", rows: Sequence[dict[str, Any]], failures: Sequence[dict[str, Any]], source: Path,
    echo: Any = print,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rows`` with the earlier rows of the planned methods that have none, in the plan's order; gains redone.

    Returns the rows and the failures that remain: the unfinished runs of a carried method are no
    longer failures of the report (its row stands for them).
    """
    from kdlab.benchmarks.suite_compare import apply_gains
    from kdlab.benchmarks.suite_report import _relative
    from kdlab.benchmarks.suite_manifest import TEACHER

    if plan.is_paired:
        raise SuiteError("--previous: suites with pairs report per pair; it takes a single-pair suite's results.json")
    previous = load_previous_rows(source)
    present = {row["method"] for row in rows}
    by_method = {row["method"]: dict(row) for row in rows}
    carried: set[str] = set()
    for spec in plan.methods:
        old = previous.get(spec.name)
        if spec.name in present or old is None:
            continue
        planned = _planned_identity(plan, spec.name)
        why = carry_mismatch(old, planned) if planned is not None else "no run of it is planned"
        if why is not None:
            echo(f"--previous: {spec.name} not carried from {_relative(source)}: {why}")
            continue
        row = {key: value for key, value in old.items() if key not in ("gain", "gain_se", "baseline")}
        row["carried_from"] = old.get("carried_from") or _relative(source)
        if "carried_teacher_top1" not in row and TEACHER in previous:
            row["carried_teacher_top1"] = previous[TEACHER].get("top1_mean")  # the teacher it distilled from
        by_method[spec.name] = row
        carried.add(spec.name)
    order = [TEACHER] + [spec.name for spec in plan.methods]
    merged = [by_method[name] for name in order if name in by_method]
    apply_gains(merged, plan.manifest.baseline_of)
    remaining = [f for f in failures if _failed_method(f) not in carried]
    return merged, remaining


def _failed_method(failure: dict[str, Any]) -> Optional[str]:
    """The method of a ``run:<method>:<seed>`` failure (None for shared work)."""
    parts = str(failure.get("task", "")).split(":")
    return parts[1] if len(parts) == 3 and parts[0] == "run" else None


def carried_note(rows: Sequence[dict[str, Any]]) -> Optional[str]:
    """The table's footnote on carried rows (and the teacher they distilled from), None when there are none."""
    from kdlab.benchmarks.suite_manifest import TEACHER

    carried = [row for row in rows if row.get("carried_from")]
    if not carried:
        return None
    sources = sorted({row["carried_from"] for row in carried})
    note = (f"{CARRIED_MARK} carried from {', '.join(sources)}: measured by an earlier invocation of this suite "
            "(same config, terms, model and epochs), not rerun for this report; its gain is against this "
            "report's baseline row.")
    earlier = sorted({row["carried_teacher_top1"] for row in carried if row.get("carried_teacher_top1") is not None})
    teacher = next((row for row in rows if row["method"] == TEACHER and not row.get("carried_from")), None)
    if earlier:
        note += (f" Those runs distilled from the teacher of their own invocation ({', '.join(f'{v:.2f}' for v in earlier)}"
                 "% top-1 after its fine-tune")
        if teacher is not None and teacher.get("top1_mean") is not None:
            note += f"; this report's teacher: {teacher['top1_mean']:.2f}%"
        note += ")."
    return note


__all__ = ["CARRIED_MARK", "carried_note", "carry_mismatch", "carry_previous_rows", "load_previous_rows"]
