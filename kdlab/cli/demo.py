"""``kdlab demo [--task classification|detection] [--seeds N] [--out DIR] [--epochs E] [--methods ...] [--quick] [--reuse]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_USAGE = 2
DEFAULT_SEEDS = 3
QUICK_SEEDS = 1
QUICK_EPOCHS = 2
TASKS = ("classification", "detection")
DETECTION_OUT = "runs/demo-detection"


class _Store(argparse._StoreAction):
    """``store`` that also notes the option was given (the detection demo has its own defaults)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        super().__call__(parser, namespace, values, option_string)
        _mark(namespace, self.dest)


class _StoreTrue(argparse._StoreTrueAction):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        super().__call__(parser, namespace, values, option_string)
        _mark(namespace, self.dest)


def _mark(namespace: argparse.Namespace, dest: str) -> None:
    namespace._given_options = {*getattr(namespace, "_given_options", ()), dest}


def _was_given(args: argparse.Namespace, dest: str) -> bool:
    return dest in getattr(args, "_given_options", ())


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
    p.add_argument(
        "--task", choices=TASKS, default="classification",
        help="classification (default): configs/demo/*.yaml on the digits; detection: Faster R-CNN teacher, plain "
             "student and roi_ckd student (configs/demo/detection/*.yaml) on digits canvases, an AP table and "
             "detections.png",
    )
    p.add_argument("--seeds", type=int, default=None, action=_Store,
                   help=f"seeds per student method (default {DEFAULT_SEEDS}; 1 with --task detection)")
    p.add_argument("--out", default="runs/demo", action=_Store,
                   help=f"output folder (default runs/demo; {DETECTION_OUT} with --task detection)")
    p.add_argument("--epochs", type=int, default=None, action=_Store,
                   help="override trainer.epochs of every run (default: the configs')")
    p.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD", action=_Store,
        help=f"student methods, each a configs/demo/<method>.yaml (default: {' '.join(DEFAULT_METHODS)}; "
             "with --task detection: student roi_ckd, each a configs/demo/detection/<method>.yaml)",
    )
    p.add_argument("--quick", action=_StoreTrue,
                   help=f"reduced check: {QUICK_SEEDS} seed, {QUICK_EPOCHS} epochs (unless --seeds/--epochs say otherwise; "
                        "--task detection: 1 epoch on a few dozen canvases)")
    p.add_argument("--reuse", action=_StoreTrue,
                   help="keep completed runs whose config matches and resume interrupted ones instead of starting clean")
    p.add_argument("--teacher", metavar="RUN_DIR", action=_Store,
                   help="use this trained teacher run folder instead of training one")
    p.add_argument("--configs", metavar="DIR", action=_Store,
                   help="folder of the demo configs (default: the checkout's configs/demo, configs/demo/detection "
                        "with --task detection)")
    p.add_argument("--no-embedding-plot", action=_StoreTrue,
                   help="skip the teacher-vs-CoSS t-SNE figure (classification only)")
    p.add_argument("--verbose", action=_StoreTrue, help="also print the trainer's per-epoch lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "task", "classification") == "detection":
        return run_detection(args)
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


def run_detection(args: argparse.Namespace) -> int:
    """``kdlab demo --task detection``: see :mod:`kdlab.reporting.detection_demo`."""
    from kdlab.reporting.detection_demo import (
        DETECTION_METHODS,
        FULL_DATA,
        QUICK_DATA,
        QUICK_EPOCHS as DETECTION_QUICK_EPOCHS,
        DemoError,
        DemoInterrupted,
        DetectionDemoOptions,
        available_methods,
        detection_config_dir,
        run_detection_demo,
    )
    from kdlab.reporting.detection_demo_output import print_summary

    def usage(message: str) -> int:
        print(f"kdlab demo: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    if _was_given(args, "no_embedding_plot"):
        return usage("--no-embedding-plot is a classification option: --task detection draws no embedding figure")
    config_dir = Path(args.configs) if args.configs else detection_config_dir()
    methods = tuple(args.methods) if _was_given(args, "methods") else DETECTION_METHODS
    if _was_given(args, "methods"):
        known = available_methods(config_dir)
        unknown = [m for m in methods if m not in known]
        if unknown:
            return usage(
                f"--methods {' '.join(unknown)}: not detection demo methods; --task detection trains "
                f"{', '.join(known) or '(none found)'} (the configs in {config_dir})"
            )
    quick = args.quick
    options = DetectionDemoOptions(
        out_dir=Path(args.out if _was_given(args, "out") else DETECTION_OUT),
        seeds=args.seeds if args.seeds is not None else 1,
        epochs=args.epochs if args.epochs is not None or not quick else DETECTION_QUICK_EPOCHS,
        methods=methods,
        data=QUICK_DATA if quick else FULL_DATA,
        config_dir=config_dir,
        teacher=Path(args.teacher) if args.teacher else None,
        reuse=args.reuse,
        verbose=args.verbose,
        command=" ".join(["kdlab", *_given(args)]),
    )
    try:
        result = run_detection_demo(options)
    except DemoError as err:
        return usage(str(err))
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
    if getattr(args, "task", "classification") == "detection":
        return _given_detection(args)
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


def _given_detection(args: argparse.Namespace) -> list[str]:
    words = ["demo", "--task", "detection"]
    for dest, flag in (("out", "--out"), ("seeds", "--seeds"), ("epochs", "--epochs"), ("teacher", "--teacher"),
                       ("configs", "--configs")):
        if _was_given(args, dest):
            words += [flag, str(getattr(args, dest))]
    if _was_given(args, "methods"):
        words += ["--methods", *args.methods]
    words += [flag for dest, flag in (("quick", "--quick"), ("reuse", "--reuse")) if getattr(args, dest)]
    return words
