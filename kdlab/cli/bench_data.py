"""``kdlab bench data [data.* overrides] [--json]``: fast path vs the torchvision reference loader."""

from __future__ import annotations

import argparse
import json

from kdlab.cli.bench import int_at_least, positive_seconds
from kdlab.cli.common import add_override_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training-batch throughput: fast path vs torchvision ImageFolder reference")
    add_override_args(p)
    p.add_argument("--seconds", type=positive_seconds, default=20.0,
                   help="measuring time per pipeline (a finite number > 0; default 20)")
    p.add_argument("--batch-size", type=int_at_least(1), default=64, help="images per batch (>= 1; default 64)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.config import load_config
    from kdlab.data import bench_data

    cfg = load_config(None, args.overrides)
    result = bench_data(cfg.data, seconds=args.seconds, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<24} {value:.2f}" if isinstance(value, float) else f"{key:<24} {value}")
    return 0
