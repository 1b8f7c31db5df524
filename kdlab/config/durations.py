"""Durations such as ``3h50m``, ``90m``, ``45s``, ``1h`` or ``120`` (seconds) -> seconds.

Lives in the config package so that the schema can validate ``trainer.time_limit`` when a config is
loaded; :mod:`kdlab.engine.timelimit` re-exports :func:`parse_duration` for the trainer.
"""

from __future__ import annotations

import math
import re

from kdlab.config.errors import ConfigError

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([dhms])")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_EXAMPLES = "'3h50m', '90m' or '45s'"


def parse_duration(text: str, key: str = "trainer.time_limit") -> float:
    """Seconds of ``text``: a sum of ``<number><unit>`` parts (units d, h, m, s) or a bare number of seconds.

    The result is finite and > 0; anything else is a :class:`ConfigError` (a ``ValueError``) naming
    ``key`` and the text.
    """
    compact = text.replace(" ", "").lower()
    if not compact:
        raise ConfigError(f"{key}={text!r} is empty: give a duration like {_EXAMPLES}, or null for no limit")
    if compact.startswith("-"):
        raise ConfigError(f"{key}={text!r} is negative: a duration must be > 0, like {_EXAMPLES}")
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", compact):
        seconds = float(compact)
    else:
        parts = _PART.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise ConfigError(f"{key}={text!r} is not a duration like {_EXAMPLES}")
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ConfigError(f"{key}={text!r} is not a finite duration")
    if seconds <= 0:
        raise ConfigError(f"{key}={text!r} is out of range: a duration must be > 0 (null: no limit)")
    return seconds
