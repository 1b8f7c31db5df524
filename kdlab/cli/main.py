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
#: stopped early by a signal or trainer.time_limit; a training run's checkpoint is saved (--resume auto)
EXIT_STOPPED = 3
#: a training run diverged (a loss or gradient became NaN/Inf); the last good checkpoint is kept
EXIT_DIVERGED = 4

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
        ("kdlab.models.registry", "OptionalDependencyError"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def run_stopped_errors() -> tuple[type[BaseException], ...]:
    """Exception types that end a run on purpose (a NaN/Inf loss): one line, exit code 4."""
    from kdlab.engine.trainer import NonFiniteLossError

    return (NonFiniteLossError,)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; for an error re-raised from a DataLoader worker, without the
    worker's traceback. kdlab's own messages are one line already; a library's text that is not is joined."""
    text = str(err)
    if "DataLoader worker" in text and "Original Traceback" in text:
        head = text.splitlines()[0].rstrip(".")
        where = head[head.index("DataLoader worker") :]
        last = [line for line in text.splitlines() if line.strip()][-1]
        detail = last.split(": ", 1)[1] if ": " in last else last
        return f"{detail} (raised in {where})"
    return " ".join(text.split()) if "\n" in text else text


def main(argv: Optional[Sequence[str]] = None) -> int:
    from kdlab.engine.stop_signal import CommandInterrupted, install_command_handlers, reset_stopping, restore_handlers

    reset_stopping()  # a stop of an earlier in-process call does not carry over
    command = _command_of(sys.argv[1:] if argv is None else list(argv))
    previous = install_command_handlers(lambda signum: _interrupted_line(command, CommandInterrupted(signum)))
    try:
        return _run(argv)
    finally:
        # the real command line (argv None) exits next: from here a signal has nothing left to stop
        restore_handlers(previous, exiting=argv is None)


def _command_of(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named in ``argv`` (its first word that is not an option), before argparse runs."""
    return next((word for word in argv if not word.startswith("-")), None)


def _interrupted_line(command: Optional[str], err: KeyboardInterrupt) -> str:
    import signal

    from kdlab.engine.stop_signal import training_started

    name = signal.Signals(getattr(err, "signum", signal.SIGINT)).name
    what = f"kdlab {command}" if command else "kdlab"
    if command != "train":
        return f"{what}: stopped by {name} (run the command again)"
    if not training_started():
        return (f"{what}: stopped by {name} before training started; nothing was trained "
                "(run the command again; with --resume auto if the run folder holds a checkpoint)")
    return f"{what}: stopped by {name} after training ended; its checkpoints are saved (--resume auto continues it)"


def _run(argv: Optional[Sequence[str]]) -> int:
    try:
        parser = build_parser()
    except KeyboardInterrupt as err:
        print(_interrupted_line(None, err), file=sys.stderr)
        return EXIT_STOPPED
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
    except KeyboardInterrupt as err:  # first: the clauses below import torch to name their types
        print(_interrupted_line(args.command, err), file=sys.stderr)
        return EXIT_STOPPED
    except user_errors() as err:
        print(f"kdlab {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except run_stopped_errors() as err:
        print(f"kdlab {args.command}: stopped: {err}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
