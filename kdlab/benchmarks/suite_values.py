"""The suite's error type and the small validators of ``suite.yaml`` values (each error names file and key)."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from kdlab.config import ConfigError

#: the placeholders a method's config path and overrides may hold in a suite with ``pairs:``
PLACEHOLDERS = ("pair", "teacher", "student")


class SuiteError(ConfigError):
    """The suite cannot run as asked (manifest, option, missing file); the message says what to fix."""


def where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def mapping(value: Any, path: Path, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"{where(path, key)} must be a mapping, got {value!r}")
    return value


def string_value(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SuiteError(f"{where(path, key)} must be a non-empty string, got {value!r}")
    return value


def flag(value: Any, path: Path, key: str) -> bool:
    if not isinstance(value, bool):
        raise SuiteError(f"{where(path, key)} must be true or false, got {value!r}")
    return value


def positive(value: Any, path: Path, key: str) -> int:
    """A positive integer (seeds, jobs)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SuiteError(f"{where(path, key)} must be an integer >= 1, got {value!r}")
    return value


def number(value: Any, path: Path, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SuiteError(f"{where(path, key)} must be a number, got {value!r}")
    return float(value)


def names(value: Any, path: Path, key: str, what: str = "method names") -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SuiteError(f"{where(path, key)} must be a list of {what}, got {value!r}")
    return tuple(value)


def overrides(value: Any, path: Path, key: str) -> tuple[str, ...]:
    """A list of ``key=value`` strings (absent: none)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(o, str) and "=" in o for o in value):
        raise SuiteError(f"{where(path, key)} must be a list of key=value strings, got {value!r}")
    return tuple(value)


def folder_name(value: str, path: Path, key: str) -> str:
    """A name used as a folder below the output (no separators, not hidden)."""
    if "/" in value or "\\" in value or value.startswith(".") or value != value.strip():
        raise SuiteError(f"{where(path, key)}={value!r} is not usable as a folder name")
    return value


def placeholders(text: str, path: Path, key: str) -> frozenset[str]:
    """The ``{name}`` fields of ``text``; SuiteError for a malformed one or one not in :data:`PLACEHOLDERS`."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise SuiteError(f"{where(path, key)}={text!r}: {err} (write literal braces as {{{{ and }}}})") from None
    unknown = sorted(f for f in fields if f not in PLACEHOLDERS)
    if unknown:
        raise SuiteError(f"{where(path, key)}={text!r}: unknown placeholder(s) {unknown}; allowed: "
                         + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
    return frozenset(fields)
