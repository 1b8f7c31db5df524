"""``kdlab bench <name> ...``: benchmarks, one module ``kdlab.cli.bench_<name>`` each."""

from __future__ import annotations

import argparse
import importlib

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
