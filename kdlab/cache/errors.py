"""Errors of the teacher-output cache.

Both are :class:`~kdlab.config.ConfigError` subclasses (hence ``ValueError``):
the CLI reports them in one line and exits with code 2, like any other input a
user can fix (a path, a config key, a stale file).
"""

from __future__ import annotations

from kdlab.config import ConfigError


class TeacherCacheError(ConfigError):
    """A teacher-output cache cannot serve this run: missing outputs, too few epochs, unusable terms, bad files."""


class TeacherCacheMismatchError(TeacherCacheError):
    """The cache was built for another teacher, dataset, augmentation or schedule; the message lists what differs."""
