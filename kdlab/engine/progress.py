"""Progress: a tqdm bar per epoch on a terminal, one summary line otherwise."""

from __future__ import annotations

import sys
from typing import Any, Optional


def use_bar(mode: str) -> bool:
    if mode == "bar":
        return True
    if mode in ("lines", "none"):
        return False
    return sys.stdout.isatty()


class EpochProgress:
    """Shows one epoch's steps; ``close`` returns nothing, summary lines are the trainer's."""

    def __init__(self, mode: str, total: int, initial: int, description: str) -> None:
        self._bar: Optional[Any] = None
        if use_bar(mode):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=description, leave=False, dynamic_ncols=True)

    def update(self, postfix: Optional[dict[str, str]] = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def say(mode: str, message: str) -> None:
    """A line for humans (suppressed by progress=none)."""
    if mode != "none":
        print(message, flush=True)
