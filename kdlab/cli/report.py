"""``kdlab report RUN_DIR... [--out FILE] [--csv FILE] [--json FILE] [--plots DIR]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="tables and plots from run folders (seeds of one config aggregated)",
        description=(
            "Find every run folder (with metrics.jsonl) below RUN_DIR..., group runs whose configs differ "
            "only in trainer.seed / out_dir / progress and similar operational keys, and report final- and "
            "best-epoch top-1 (mean ± std over seeds), kNN / linear-probe / manifold metrics when present "
            "(eval.json) and training time. A run folder without config.yaml is reported on its own (never "
            "pooled with other runs as seeds) with a warning naming it; a final.json that is not the trainer's "
            "summary is an error naming it (exit 2). Output files (--out, --csv, --json, the PNGs) must be "
            "regular files or new paths: anything else is refused before any run is read (exit 2)."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders or folders containing them")
    p.add_argument("--out", metavar="FILE", help="write the Markdown table here instead of stdout")
    p.add_argument("--csv", metavar="FILE", help="also write every row field as CSV")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON (the demo's results.json schema)")
    p.add_argument(
        "--plots", metavar="DIR",
        help="write training_curves.png and accuracy.png here; a figure with nothing to draw (e.g. every "
             "metrics.jsonl is empty) is skipped with a warning on stderr, the tables are still written (exit 0)",
    )
    p.add_argument("--baseline", metavar="LABEL", help="add a gain column relative to this group (e.g. student)")
    p.add_argument("--include-incomplete", action="store_true", help="also report runs without final.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.reporting import (
        RunFolderError,
        collect_groups,
        plot_accuracy,
        plot_training_curves,
        rows_for,
        seed_finals,
        to_csv,
        to_markdown,
    )
    from kdlab.reporting.plots import NothingToPlotError

    _check_outputs(args)  # before any run folder is read
    try:
        groups = collect_groups(args.run_dirs, include_incomplete=args.include_incomplete, warn=_warn)
        rows = rows_for(groups, baseline=args.baseline)
    except (RunFolderError, ValueError) as err:
        print(f"kdlab report: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    markdown = to_markdown(rows)
    if args.out:
        _write(args.out, markdown, "--out")
    else:
        sys.stdout.write(markdown)
    if args.csv:
        _write(args.csv, to_csv(rows), "--csv")
    if args.json:
        _write(args.json, json.dumps(rows, indent=2) + "\n", "--json")
    if args.plots:
        plots = Path(args.plots)
        figures = (
            (PLOT_FILES[0], lambda path: plot_training_curves(groups, path)),
            (PLOT_FILES[1], lambda path: plot_accuracy(rows, path, seed_values=seed_finals(groups),
                                                       baseline=args.baseline)),
        )
        for name, draw in figures:
            try:
                draw(plots / name)
            except NothingToPlotError as err:
                _warn(f"{plots / name} not written: {err}")
    return 0


def _warn(message: str) -> None:
    print(f"kdlab report: warning: {message}", file=sys.stderr)


#: the figures --plots writes, in this order
PLOT_FILES = ("training_curves.png", "accuracy.png")


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output path is a regular file or a new path (a folder for --plots): else one line, exit 2."""
    if not (args.out or args.csv or args.json or args.plots):
        return  # the table to stdout: nothing to check (and torch, which checkpoint_io imports, stays unloaded)
    from kdlab.checkpoint_io import check_output_file, check_output_folder

    for option, value in (("--out", args.out), ("--csv", args.csv), ("--json", args.json)):
        if value:
            check_output_file(value, option)
    if args.plots:
        folder = check_output_folder(args.plots, "--plots")
        for name in PLOT_FILES:
            check_output_file(folder / name, "--plots")


def _write(path: str, text: str, option: str) -> None:
    from kdlab.checkpoint_io import atomic_write_text

    atomic_write_text(path, text, what=option)
