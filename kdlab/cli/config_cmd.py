"""``kdlab print-config CONFIG [overrides]``."""

from __future__ import annotations

import argparse

from kdlab.cli.common import add_config_args, config_from_args
from kdlab.config import dump_yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("print-config", help="print the resolved, validated config")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(dump_yaml(config_from_args(args)), end="")
    return 0
