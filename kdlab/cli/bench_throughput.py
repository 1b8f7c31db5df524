"""``kdlab bench throughput CONFIG [overrides] [--json] [--seconds S]``: KD training speed, four ways."""

from __future__ import annotations

import argparse
import json
import sys

from kdlab.cli.bench import int_at_least, positive_seconds
from kdlab.cli.common import add_config_args, config_from_args

_LABELS = {
    "reference": "reference loop (torchvision ImageFolder, 2 workers)",
    "student_only": "kdlab, student only (ce; det for detection)",
    "distill_live": "kdlab, distillation, live teacher",
    "distill_cached": "kdlab, distillation, teacher cache",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "throughput",
        help="training images/s and peak memory: reference KD loop vs kdlab (student only, live teacher, cache)",
    )
    add_config_args(p)
    p.add_argument("--seconds", type=positive_seconds, default=20.0,
                   help="timed seconds per configuration (a finite number > 0; default 20)")
    p.add_argument("--rounds", type=int_at_least(1), default=4,
                   help="alternating slices the seconds are split into (default 4)")
    p.add_argument("--cache", metavar="PATH", help="teacher cache folder to reuse or build (default: a temporary one)")
    p.add_argument("--cache-epochs", type=int_at_least(1), default=1, help="epochs the teacher cache holds (default 1)")
    p.add_argument("--warmup-steps", type=int_at_least(0), default=3,
                   help="untimed steps at the start of every slice (default 3)")
    p.add_argument("--threads", type=int_at_least(1), help="torch threads per configuration (default: one per core)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _progress(line: str) -> None:
    """Progress lines go to stderr, so that with --json stdout holds the one JSON object."""
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from kdlab.benchmarks.throughput import BenchmarkError, bench_throughput
    from kdlab.config import ConfigError

    if args.cache_epochs < 1:
        raise ConfigError(f"--cache-epochs must be >= 1, got {args.cache_epochs}")
    if args.cache is not None:
        from kdlab.checkpoint_io import check_output_folder

        check_output_folder(args.cache, "--cache")  # a file, device or pipe there: one line, before any work
    cfg = config_from_args(args)
    try:
        result = bench_throughput(
            cfg, seconds=args.seconds, rounds=args.rounds, cache=args.cache, cache_epochs=args.cache_epochs,
            warmup_steps=args.warmup_steps, threads=args.threads, progress=_progress,
        )
    except BenchmarkError as err:
        print(f"kdlab bench throughput: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"device {result['device']}, batch {result['batch_size']}, {result['seconds']:g} s per configuration "
          f"in {result['rounds']} alternating slices, {result['torch_threads']} torch threads")
    print(f"{'images/s (best slice, median); peak MiB (+ above imports)':<52} {'best':>8} {'median':>8} "
          f"{'peak':>7} {'+':>6}")
    for kind in result.get("kinds", list(_LABELS)):
        label = _LABELS[kind]
        peak = result["peak_memory_mb"][kind] or float("nan")
        above = result["peak_memory_above_baseline_mb"][kind]
        print(f"{label:<52} {result[kind + '_ips']:8.1f} {result['ips_median'][kind]:8.1f} {peak:7.0f} "
              f"{above if above is not None else float('nan'):6.0f}")
    for name, ratio in result["ratios"].items():
        target = result["targets"].get(name)
        if target is None:
            print(f"{name:<52} {ratio:8.2f} {result['ratios_median'][name]:8.2f}")
            continue
        mark = "ok" if result["targets_met"][name] else "BELOW TARGET"
        print(f"{name:<52} {ratio:8.2f} {result['ratios_median'][name]:8.2f}  (target >= {target:g}: {mark})")
    cache = result["cache"]
    if cache is None:
        return 0
    print(f"teacher cache: {cache['epochs']} epoch(s), {cache['bytes'] / 2**20:.1f} MiB, "
          f"built in {cache['seconds']:.1f} s (not timed)")
    return 0
