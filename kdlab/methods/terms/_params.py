"""Checks of term parameters; each error names the parameter and shows its value."""

from __future__ import annotations

from typing import Any, Sequence


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(param: str, value: Any) -> float:
    """``value`` as a float > 0."""
    if not _is_number(value) or not value > 0:
        raise ValueError(f"{param}={value!r} must be a number > 0")
    return float(value)


def non_negative(param: str, value: Any) -> float:
    """``value`` as a float >= 0."""
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"{param}={value!r} must be a number >= 0")
    return float(value)


def positive_int(param: str, value: Any) -> int:
    """``value`` as an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{param}={value!r} must be an integer >= 1")
    return value


def fraction(param: str, value: Any) -> float:
    """``value`` as a float in [0, 1]."""
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{param}={value!r} must be a number in [0, 1]")
    return float(value)


def choice(param: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{param}={value!r} must be one of {', '.join(allowed)}")
    return str(value)


def boolean(param: str, value: Any) -> bool:
    """``value`` if it is ``true`` / ``false`` (not 0 / 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{param}={value!r} must be true or false")
    return value
