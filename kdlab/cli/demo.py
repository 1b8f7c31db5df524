"""``kdlab demo [--seeds N] [--out DIR] [--epochs E] [--methods ...] [--quick] [--reuse]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USAGE = 2
DEFAULT_SEEDS = 3
QUICK_SEEDS = 1
QUICK_EPOCHS = 2


def register(sub: argparse._SubParsersAction) -> None:
    from kdlab.reporting.demo import DEFAULT_METHODS

    p = sub.add_parser(
        "demo",
        help="train a small teacher on the embedded digits, then the same student with every method",
        description=(
            "Runs configs/demo/teacher.yaml, then configs/demo/<method>.yaml for each method and seed "
            "(ordinary `kdlab train` runs with out_dir/seed/teacher overrides), prints a results table and "
            "writes results.json, report.md and figures. No download, CPU is enough. An existing output "
            "folder written by the demo is cleared first unless --reuse."
        ),
    )
    p.add_argument("--seeds", type=int, default=None, help=f"seeds per student method (default {DEFAULT_SEEDS})")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="override trainer.epochs of every run (default: the configs')")
    p.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
        help=f"student methods, each a configs/demo/<method>.yaml (default: {' '.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"reduced check: {QUICK_SEEDS} seed, {QUICK_EPOCHS} epochs (unless --seeds/--epochs say otherwise)")
    p.add_argument("--reuse", action="store_true",
                   help="keep completed runs whose config matches and resume interrupted ones instead of starting clean")
    p.add_argument("--teacher", metavar="RUN_DIR", help="use this trained teacher run folder instead of training one")
    p.add_argument("--configs", metavar="DIR", help="folder of the demo configs (default: the checkout's configs/demo)")
    p.add_argument("--no-embedding-plot", action="store_true", help="skip the teacher-vs-CoSS t-SNE figure")
    p.add_argument("--verbose", action="store_true", help="also print the trainer's per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.reporting.demo import DemoError, DemoInterrupted, DemoOptions, run_demo
    from kdlab.reporting.demo_output import print_summary

    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    epochs = args.epochs if args.epochs is not None or not args.quick else QUICK_EPOCHS
    options = DemoOptions(
        out_dir=Path(args.out),
        seeds=seeds,
        epochs=epochs,
        methods=tuple(args.methods),
        config_dir=Path(args.configs) if args.configs else None,
        teacher=Path(args.teacher) if args.teacher else None,
        reuse=args.reuse,
        verbose=args.verbose,
        embedding_plot=not args.no_embedding_plot,
        command=" ".join(["kdlab", *_given(args)]),
    )
    try:
        result = run_demo(options)
    except DemoError as err:
        print(f"kdlab demo: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except DemoInterrupted as err:
        print(f"kdlab demo: {err}", file=sys.stderr)
        return err.exit_code
    print_summary(result)
    return 0


def _given(args: argparse.Namespace) -> list[str]:
    """The command-line words after ``kdlab`` (for report.md), or a reconstruction when called in-process."""
    from kdlab.reporting.demo import DEFAULT_METHODS

    argv = sys.argv[1:]
    if argv and argv[0] == "demo":
        return argv
    words = ["demo", "--out", args.out]
    if args.seeds is not None:
        words += ["--seeds", str(args.seeds)]
    if args.epochs is not None:
        words += ["--epochs", str(args.epochs)]
    if args.quick:
        words.append("--quick")
    if args.methods != list(DEFAULT_METHODS):
        words += ["--methods", *args.methods]
    return words
