"""Shared test fixtures: CPU-only, few threads, and the location of ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread: on a busy 2-core machine a second thread waits on scheduling more than it computes.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KDLAB_SHARED", REPO_ROOT.parent / "shared"))
CIFAR10_ZIP = SHARED / "data" / "cifar10-jpg.zip"
TEACHERS = SHARED / "teachers"


@pytest.fixture
def shared_dir() -> Path:
    """../shared, or skip: it holds real data that a user's clone does not have."""
    if not CIFAR10_ZIP.exists() or not TEACHERS.exists():
        pytest.skip(f"needs the shared data folder at {SHARED} (present in CI, absent in a user's clone)")
    return SHARED
