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
            "(eval.json) and training time."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders or folders containing them")
    p.add_argument("--out", metavar="FILE", help="write the Markdown table here instead of stdout")
    p.add_argument("--csv", metavar="FILE", help="also write every row field as CSV")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON (the demo's results.json schema)")
    p.add_argument("--plots", metavar="DIR", help="write training_curves.png and accuracy.png here")
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

    try:
        groups = collect_groups(args.run_dirs, include_incomplete=args.include_incomplete)
        rows = rows_for(groups, baseline=args.baseline)
    except (RunFolderError, ValueError) as err:
        print(f"kdlab report: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    markdown = to_markdown(rows)
    if args.out:
        _write(args.out, markdown)
    else:
        sys.stdout.write(markdown)
    if args.csv:
        _write(args.csv, to_csv(rows))
    if args.json:
        _write(args.json, json.dumps(rows, indent=2) + "\n")
    if args.plots:
        plots = Path(args.plots)
        plot_training_curves(groups, plots / "training_curves.png")
        plot_accuracy(rows, plots / "accuracy.png", seed_values=seed_finals(groups), baseline=args.baseline)
    return 0


def _write(path: str, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
