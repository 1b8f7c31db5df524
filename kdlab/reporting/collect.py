"""From folders on disk to report rows: find runs, group them, summarise each group."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from kdlab.reporting.aggregate import RunGroup, add_gains, group_runs, summarize
from kdlab.reporting.runs import find_run_dirs, load_run


def collect_groups(roots: Iterable[str | Path], *, include_incomplete: bool = False) -> list[RunGroup]:
    """Every run folder below ``roots``, grouped by config (seed apart).

    Runs without ``final.json`` (still training, stopped early, crashed) are left out unless
    ``include_incomplete``: their "final" epoch is not the configured last one.
    """
    roots = list(roots)
    if not roots:
        raise ValueError("no run folders given")
    entries = []
    skipped = []
    for root, path in find_run_dirs(roots):
        run = load_run(path)
        if run.completed or include_incomplete:
            entries.append((root, run))
        else:
            skipped.append(path)
    if not entries:
        where = ", ".join(str(r) for r in roots)
        extra = f" ({len(skipped)} incomplete run(s) skipped: pass --include-incomplete)" if skipped else ""
        raise FileNotFoundError(f"no completed run folders (with metrics.jsonl and final.json) under {where}{extra}")
    return group_runs(entries)


def rows_for(groups: Iterable[RunGroup], *, baseline: Optional[str] = None) -> list[dict[str, Any]]:
    """One summary row per group, with gains over ``baseline`` (a group label) if given."""
    rows = [summarize(group) for group in groups]
    if baseline is not None:
        add_gains(rows, baseline)
    return rows
