"""Durations such as ``3h50m``, ``90m``, ``45s`` or ``1h`` -> seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    compact = text.replace(" ", "").lower()
    if not compact:
        raise ValueError("trainer.time_limit is empty; use e.g. '3h50m'")
    if re.fullmatch(r"\d+(\.\d+)?", compact):
        return float(compact)
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"trainer.time_limit={text!r} is not a duration like '3h50m', '90m' or '45s'")
    return sum(float(n) * _UNIT[u] for n, u in parts)
