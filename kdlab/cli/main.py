"""``kdlab`` command line: one subcommand per module in this package.

Each command module exposes ``register(subparsers)`` that adds its parser and
sets ``func``; ``func(args) -> int`` returns the exit code. Errors a user can
fix (config, data, checkpoint) print one clear line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

import kdlab

EXIT_USAGE = 2

COMMANDS = (
    "train",
    "evaluate",
    "config_cmd",
    "listing",
    "data_cmd",
    "bench",
    "demo",
    "report",
    "knn_index",
    "cache_teacher",
    "export",
    "profile",
    "recipes",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its usage line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdlab", description="Knowledge distillation toolkit.")
    parser.add_argument("--version", action="version", version=f"kdlab {kdlab.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"kdlab.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"kdlab.cli.{name}":
                continue  # a command not built yet in this checkout
            raise
        module.register(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'your input is wrong', reported without a traceback."""
    from kdlab.config import ConfigError
    from kdlab.engine.checkpoint import CheckpointError

    errors: list[type[BaseException]] = [ConfigError, CheckpointError, FileNotFoundError]
    for module, name in (
        ("kdlab.data", "DataError"),
        ("kdlab.models.checkpoint", "CheckpointMismatchError"),
        ("kdlab.models.checkpoint", "UnsafeCheckpointError"),
        ("kdlab.eval.detection", "DetectionEvalUnavailable"),
        ("kdlab.engine.metrics_log", "MetricsLogError"),
        ("kdlab.reporting.runs", "RunFolderError"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def run_stopped_errors() -> tuple[type[BaseException], ...]:
    """Exception types that end a run on purpose (e.g. a NaN loss): one line, exit code 1."""
    from kdlab.engine.trainer import NonFiniteLossError

    return (NonFiniteLossError,)


def one_line(err: BaseException) -> str:
    """The message of ``err``; for an error re-raised from a DataLoader worker, without the worker's traceback."""
    text = str(err)
    if "DataLoader worker" in text and "Original Traceback" in text:
        head = text.splitlines()[0].rstrip(".")
        where = head[head.index("DataLoader worker") :]
        last = [line for line in text.splitlines() if line.strip()][-1]
        detail = last.split(": ", 1)[1] if ": " in last else last
        return f"{detail} (raised in {where})"
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may follow options (`train CFG --resume auto trainer.epochs=3`): argparse leaves them over
    stray = [t for t in extra if t.startswith("-") or "=" not in t or not isinstance(getattr(args, "overrides", None), list)]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except user_errors() as err:
        print(f"kdlab {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except run_stopped_errors() as err:
        print(f"kdlab {args.command}: stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
