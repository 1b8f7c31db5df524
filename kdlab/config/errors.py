"""The one error type of the config package (here so that every config module can raise it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message says which."""
