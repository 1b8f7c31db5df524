"""``kdlab bench <name> ...``: benchmarks, one module ``kdlab.cli.bench_<name>`` each."""

from __future__ import annotations

import argparse
import importlib
import math
from typing import Callable

BENCHMARKS = ("data", "throughput", "suite")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (data pipeline, training throughput, CPU benchmark suite)")
    inner = p.add_subparsers(dest="bench", metavar="BENCHMARK", parser_class=type(p))
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(f"kdlab.cli.bench_{name}")
        except ModuleNotFoundError as err:
            if err.name == f"kdlab.cli.bench_{name}":
                continue
            raise
        module.register(inner)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def positive_seconds(text: str) -> float:
    """argparse type of a duration: a finite number of seconds > 0 (``inf``, ``nan``, 0 or less would never end
    a timed loop, or end it at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type of a count: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse
