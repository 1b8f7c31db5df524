"""Stopping a run cleanly: signals, step budgets and time limits.

Two layers share SIGINT and SIGTERM. For the whole command (:func:`install_command_handlers`, set
first thing by the CLI) a signal raises :class:`CommandInterrupted` at the next bytecode, so a
command stopped while it builds its data or models ends with one line and exit code 3, never a
traceback or the shell's 130/143. While a run trains, :class:`StopSignal` takes over: the step in
progress finishes, the run checkpoints and returns exit code 3. Once a run is stopping, further
signals (Ctrl-C pressed again) are ignored for the rest of the process: the checkpoint is saved
or being saved, and interrupting the way out would only turn a clean stop into a misleading exit.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any, Callable, Optional

#: stop reasons by urgency; under DDP every rank stops for the most urgent one any rank has
STOP_PREFIXES = ("trainer.stop_after_steps", "trainer.time_limit", "signal")

#: the exit code of a command stopped early on purpose (signal, trainer.time_limit): resumable
EXIT_STOPPED = 3
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_stopping = False
_trained = False


class CommandInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived outside a training loop (before it, or in a command that does not train).

    A ``KeyboardInterrupt``, so no ``except Exception`` swallows it and test runners treat it as one.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _default_message(signum: int) -> str:
    return f"kdlab: stopped by {signal.Signals(signum).name}"


_message: Callable[[int], str] = _default_message


def _inside_an_import(frame: Optional[FrameType]) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_interrupted(signum: int, frame: Optional[FrameType]) -> None:
    global _stopping
    if _stopping:
        return
    _stopping = True  # the command is on its way out: the next Ctrl-C must not interrupt its last line
    if _inside_an_import(frame):
        # an exception through a half-run import (torch's C extension) leaves modules that crash the
        # interpreter when touched again: nothing was trained or written yet, so leave at once
        os.write(2, (_message(signum) + "\n").encode())
        os._exit(EXIT_STOPPED)
    raise CommandInterrupted(signum)


def install_command_handlers(message: Optional[Callable[[int], str]] = None) -> dict[int, Any]:
    """SIGINT/SIGTERM raise :class:`CommandInterrupted` from now on; returns the handlers replaced.

    ``message(signum)``: the line printed when a signal lands inside an import (the process then
    exits with :data:`EXIT_STOPPED` at once). Only the main thread may set handlers; elsewhere nothing
    changes and ``{}`` is returned.
    """
    global _message
    _message = message or _default_message
    previous: dict[int, Any] = {}
    for sig in _SIGNALS:
        try:
            previous[sig] = signal.signal(sig, _raise_interrupted)
        except ValueError:
            break
    return previous


def restore_handlers(previous: dict[int, Any], exiting: bool = False) -> None:
    """Put back what :func:`install_command_handlers` replaced; when the process is about to exit
    (``exiting``), ignore the signals instead, so a late Ctrl-C cannot turn a clean end into a kill."""
    if exiting:
        ignore_signals()
        return
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def ignore_signals() -> None:
    """SIG_IGN for SIGINT/SIGTERM (not a Python no-op: the interpreter's shutdown would put the
    default, fatal, handlers back before it exits)."""
    for sig in _SIGNALS:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:
            return


def stopping() -> bool:
    """Whether a run of this process was stopped by a signal (later signals are being ignored)."""
    return _stopping


def training_started() -> bool:
    """Whether a training loop of this process has begun (since :func:`reset_stopping`)."""
    return _trained


def reset_stopping() -> None:
    """Forget an earlier run's stop (tests and in-process drivers that go on after a stopped run)."""
    global _stopping, _trained
    _stopping = _trained = False


class StopSignal:
    """SIGTERM/SIGINT set a flag; the step in progress finishes, then the run checkpoints and exits."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        global _trained
        _trained = True
        for sig in _SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        global _stopping
        if self.received is None:
            self.received = signum
        _stopping = True

    def __exit__(self, *exc: Any) -> None:
        if self.received is not None:
            ignore_signals()  # a run stopped by a signal is on its way out: a second Ctrl-C must not raise past its checkpoint
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def reason(self) -> Optional[str]:
        return None if self.received is None else f"signal {signal.Signals(self.received).name}"


def urgency(reason: Optional[str]) -> int:
    """0 for no reason, else 1 + the reason's index in :data:`STOP_PREFIXES`."""
    return 0 if reason is None else 1 + next(i for i, p in enumerate(STOP_PREFIXES) if reason.startswith(p))
