"""Durations such as ``3h50m``, ``90m``, ``45s`` or ``1h`` -> seconds.

The parser lives in :mod:`kdlab.config.durations` (the schema validates ``trainer.time_limit`` with
it when a config is loaded); this module keeps the engine's import path.
"""

from __future__ import annotations

from kdlab.config.durations import parse_duration

__all__ = ["parse_duration"]
