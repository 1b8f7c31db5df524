"""``metrics.jsonl``: one JSON object per evaluated epoch, the source of truth for reports."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger("kdlab.engine")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, epochs_done: int) -> None:
        """Drop lines of epochs a resumed run will redo (written after its checkpoint).

        The file is replaced atomically (a temporary file renamed over it): a kill during the
        rewrite leaves the old file or the new one, never half of one.
        """
        if not os.path.lexists(self.path):
            return
        kept = [line for line in self.read() if line.get("epoch", 0) < epochs_done]
        from kdlab.checkpoint_io import atomic_write_text

        atomic_write_text(self.path, "".join(json.dumps(line) + "\n" for line in kept), what="metrics log")

    def append(self, row: dict[str, Any]) -> None:
        from kdlab.checkpoint_io import check_output_file

        check_output_file(self.path, "metrics log")  # appending to a pipe would block; a device swallow the rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every row; a last line cut short (a kill during its append) is skipped with a warning.

        A damaged line anywhere else is an error naming the file and the line: that is not
        what an interrupted append leaves.
        """
        if not os.path.lexists(self.path):
            return []
        if not self.path.is_file():  # a folder, a pipe (the read would block), a device, a dangling link
            raise MetricsLogError(f"{self.path} is {_what_is(self.path)}, not a regular file: not a metrics.jsonl")
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise MetricsLogError(f"{self.path} is not UTF-8 text (byte {err.start}): not a metrics.jsonl") from None
        lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        rows = []
        for position, (number, line) in enumerate(lines):
            try:
                row = json.loads(line)
            except ValueError:
                if position == len(lines) - 1:
                    message = f"{self.path} line {number} was cut short (an interrupted write?); skipped"
                    logger.warning(message)
                    warnings.warn(message, stacklevel=2)
                    break
                raise MetricsLogError(f"{self.path} line {number} is not valid JSON: {line[:60]!r}") from None
            if not isinstance(row, dict):
                raise MetricsLogError(f"{self.path} line {number} must be a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows


def _what_is(path: Path) -> str:
    """"a folder", "a named pipe (FIFO)", ... for a message (without importing torch, as reports read these files)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a link to nothing" if path.is_symlink() else "unreadable"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


class MetricsLogError(ValueError):
    """metrics.jsonl cannot be read; the message names the file and the line."""
