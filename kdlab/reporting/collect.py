"""From folders on disk to report rows: find runs, group them, summarise each group."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from kdlab.reporting.aggregate import RunGroup, add_gains, group_runs, has_config, summarize
from kdlab.reporting.runs import CONFIG_FILE, find_run_dirs, load_run


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def collect_groups(
    roots: Iterable[str | Path], *, include_incomplete: bool = False, warn: Optional[Callable[[str], None]] = None
) -> list[RunGroup]:
    """Every run folder below ``roots``, grouped by config (seed apart).

    Runs without ``final.json`` (still training, stopped early, crashed) are left out unless
    ``include_incomplete``: their "final" epoch is not the configured last one. A damaged
    ``final.json`` raises :class:`RunFolderError` naming it. A run folder without ``config.yaml``
    is reported on its own, never pooled with other runs as seeds of one config (nothing says they
    share one), and ``warn`` (default :func:`warnings.warn`) is told its name.
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
            if not has_config(run):
                (warn or _warn)(f"run folder {path} has no {CONFIG_FILE} (kdlab train writes it when a run starts): "
                                "reported on its own, not grouped with other seeds")
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
