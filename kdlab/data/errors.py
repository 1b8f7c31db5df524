"""The one exception type of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with the data or the data config.

    The message always names the file, folder or config key at fault and what
    was expected there, so a user can fix it without reading the code.
    """
