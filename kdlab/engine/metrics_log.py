"""``metrics.jsonl``: one JSON object per evaluated epoch, the source of truth for reports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, epochs_done: int) -> None:
        """Drop lines of epochs a resumed run will redo (written after its checkpoint)."""
        if not self.path.exists():
            return
        kept = [line for line in self.read() if line.get("epoch", 0) < epochs_done]
        self.path.write_text("".join(json.dumps(line) + "\n" for line in kept))

    def append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
