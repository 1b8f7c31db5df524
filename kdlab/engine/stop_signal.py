"""Stopping a run cleanly: signals, step budgets and time limits."""

from __future__ import annotations

import signal
from typing import Any, Optional

#: stop reasons by urgency; under DDP every rank stops for the most urgent one any rank has
STOP_PREFIXES = ("trainer.stop_after_steps", "trainer.time_limit", "signal")


class StopSignal:
    """SIGTERM/SIGINT set a flag; the step in progress finishes, then the run checkpoints and exits."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def reason(self) -> Optional[str]:
        return None if self.received is None else f"signal {signal.Signals(self.received).name}"


def urgency(reason: Optional[str]) -> int:
    """0 for no reason, else 1 + the reason's index in :data:`STOP_PREFIXES`."""
    return 0 if reason is None else 1 + next(i for i, p in enumerate(STOP_PREFIXES) if reason.startswith(p))
