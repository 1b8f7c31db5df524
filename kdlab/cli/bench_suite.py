"""``kdlab bench suite SUITE_DIR [key=value ...] [--seeds N] [--methods ...] [--pairs ...] [--out DIR] [--mini]``.

Runs a benchmark suite folder (``suite.yaml`` + configs; see
:mod:`kdlab.benchmarks.suite`): the teacher's evaluation and fine-tune, every
method for every seed (and pair), then the results table and report.

``--dry-run`` plans and validates without training and exits 0 when the suite can
start, 2 when a config does not validate, 4 when files (data, teachers) are missing;
the plan and the list of problems are printed in every case.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from kdlab.cli.bench import int_at_least


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "suite",
        help="real-data benchmark of every method over seeds (e.g. benchmarks/cifar10_cpu)",
        description=(
            "Run a benchmark suite folder: evaluate and fine-tune its teacher, train every method for every seed, "
            "then write results.json and report.md into --out. Running the same command again keeps completed "
            "runs and resumes interrupted ones. key=value overrides (right after the folder) apply to every run."
        ),
    )
    p.add_argument("suite", help="suite folder holding suite.yaml, e.g. benchmarks/cifar10_cpu")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides for every run, e.g. data.root=PATH")
    p.add_argument("--seeds", type=int_at_least(1), help="seeds per method (default: the manifest's)")
    p.add_argument("--methods", nargs="+", metavar="METHOD", help="run only these methods (default: all)")
    p.add_argument("--pairs", nargs="+", metavar="PAIR",
                   help="suites with pairs: run only these teacher_student pairs (default: all)")
    p.add_argument("--jobs", type=int_at_least(1),
                   help="runs trained side by side in worker processes (default: the manifest's)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/bench/<suite name>)")
    p.add_argument("--mini", action="store_true", help="the miniature suite of the manifest (smoke test, seconds)")
    p.add_argument("--teacher-checkpoint", type=Path, metavar="PATH",
                   help="pretrained teacher weights to use instead of the teacher config's model.checkpoint")
    p.add_argument("--no-teacher-cache", action="store_true", help="run the teacher live in every method")
    p.add_argument("--fresh", action="store_true", help="delete the suite's previous runs in --out first")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing run (default: record, go on)")
    p.add_argument("--dry-run", action="store_true",
                   help="check configs and paths, print the runs and what is missing, train nothing; exit 0 when "
                        "ready, 2 when a config does not validate, 4 when files are missing")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the report of the runs already finished in --out (unfinished ones "
                        "are listed; exit 1 when any is not finished)")
    p.add_argument("--previous", type=Path, metavar="RESULTS.json",
                   help="with --report-only: keep the rows of an earlier results.json (e.g. docs/benchmarks.json) for "
                        "the methods with no finished run in --out, marked as carried, when their config, terms, model "
                        "and epochs are the planned ones")
    p.add_argument("--doc", type=Path, metavar="PATH.md",
                   help="also write the report there (with --dry-run: the protocol and command only)")
    p.add_argument("--results-json", type=Path, metavar="PATH.json", help="also write the result rows there")
    p.add_argument("--verbose", action="store_true", help="the trainer's per-epoch lines")
    p.set_defaults(func=run)


def _command_line() -> str:
    """The command as typed (``kdlab ...``), for the report."""
    args = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name in ("kdlab", "__main__.py") else None
    if not args:
        return "kdlab bench suite"
    return "kdlab " + " ".join(shlex.quote(a) for a in args)


def run(args: argparse.Namespace) -> int:
    from kdlab.benchmarks.suite import SuiteOptions, dry_run, run_suite
    from kdlab.checkpoint_io import check_output_file, check_output_folder
    from kdlab.reporting.tables import footnotes, to_text

    # the outputs first: a device, pipe or folder at --doc / --results-json is one line before any training
    if args.out is not None:
        check_output_folder(args.out, "--out")
    for option, value in (("--doc", args.doc), ("--results-json", args.results_json)):
        if value is not None:
            check_output_file(value, option)
    options = SuiteOptions(
        suite_dir=Path(args.suite),
        out_dir=args.out,
        seeds=args.seeds,
        methods=tuple(args.methods) if args.methods else None,
        pairs=tuple(args.pairs) if args.pairs else None,
        jobs=args.jobs,
        mini=args.mini,
        overrides=tuple(args.overrides),
        teacher_checkpoint=args.teacher_checkpoint,
        teacher_cache=not args.no_teacher_cache,
        fresh=args.fresh,
        keep_going=not args.fail_fast,
        doc=args.doc,
        results_json=args.results_json,
        report_only=args.report_only,
        previous=args.previous,
        verbose=args.verbose,
        command=_command_line(),
    )
    if args.report_only and (args.fresh or args.dry_run):
        other = "--fresh" if args.fresh else "--dry-run"
        print(f"kdlab bench suite: error: --report-only reads the finished runs; it cannot be combined with {other}",
              file=sys.stderr)
        return 2
    if args.previous is not None and not args.report_only:
        print("kdlab bench suite: error: --previous carries earlier rows into a report; it needs --report-only",
              file=sys.stderr)
        return 2
    if args.dry_run:
        plan = dry_run(options, echo=lambda line: print(line, flush=True))
        return plan.problems.exit_code
    result = run_suite(options, echo=lambda line: print(line, flush=True))
    if result.rows:
        print()
        print(to_text(result.rows).rstrip())
        for note in footnotes(result.rows):
            print(f"  {note}")
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    if result.failures and result.report_only:
        print(f"{len(result.failures)} task(s) not finished: listed in the report", file=sys.stderr)
    elif result.failures:
        print(f"{len(result.failures)} run(s) failed; see {result.plan.out_dir / 'suite.json'}", file=sys.stderr)
    return result.exit_code
