"""Reports over run folders: aggregation over seeds, tables (Markdown, CSV, text) and plots.

``kdlab report`` and ``kdlab demo`` share everything here; one row per group of runs that
differ only in their seed, with the schema documented in :mod:`kdlab.reporting.aggregate`.
"""

from kdlab.reporting.aggregate import (
    IGNORED_KEYS,
    RunGroup,
    add_gains,
    group_key,
    group_runs,
    mean_std,
    run_accuracy,
    seed_finals,
    summarize,
)
from kdlab.reporting.collect import collect_groups, rows_for
from kdlab.reporting.plots import plot_accuracy, plot_training_curves
from kdlab.reporting.runs import EVAL_FILE, RunFolderError, RunRecord, find_run_dirs, load_run
from kdlab.reporting.tables import format_mean_std, format_seconds, to_csv, to_markdown, to_text

__all__ = [
    "EVAL_FILE",
    "IGNORED_KEYS",
    "RunFolderError",
    "RunGroup",
    "RunRecord",
    "add_gains",
    "collect_groups",
    "find_run_dirs",
    "format_mean_std",
    "format_seconds",
    "group_key",
    "group_runs",
    "load_run",
    "mean_std",
    "plot_accuracy",
    "plot_training_curves",
    "rows_for",
    "run_accuracy",
    "seed_finals",
    "summarize",
    "to_csv",
    "to_markdown",
    "to_text",
]
