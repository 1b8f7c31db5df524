"""Fixtures of the benchmark-suite tests (the generated suite is written by suite_fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite_fixtures import make_tiny_suite


@pytest.fixture
def tiny_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh tiny suite in tmp (free to edit), with tmp as the working directory."""
    monkeypatch.chdir(tmp_path)
    return make_tiny_suite(tmp_path)
