"""``kdlab data info|prepare [data.* overrides]``."""

from __future__ import annotations

import argparse
import json

from kdlab.cli.common import add_override_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets and build the fast-path cache")
    inner = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    info = inner.add_parser("info", help="sample and class counts per split, without decoding images")
    add_override_args(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=run_info)
    prepare = inner.add_parser("prepare", help="decode once into the fast-path uint8 cache")
    add_override_args(prepare)
    prepare.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.set_defaults(func=run_prepare)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _data_config(args: argparse.Namespace):
    from kdlab.config import ConfigError, load_config

    bad = [o for o in args.overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"`kdlab data` takes only data.* overrides, got {', '.join(bad)}")
    return load_config(None, args.overrides).data


def run_info(args: argparse.Namespace) -> int:
    from kdlab.data import dataset_info

    info = dataset_info(_data_config(args))
    if args.json:
        print(json.dumps(info))
    else:
        for split, counts in info["splits"].items():
            print(f"{split:<6} {counts['samples']:>8} samples  {counts['classes']:>5} classes")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from kdlab.data import prepare_cache

    report = prepare_cache(_data_config(args), progress=not args.json)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        for key, value in report.items():
            print(f"{key:<20} {value}")
    return 0
