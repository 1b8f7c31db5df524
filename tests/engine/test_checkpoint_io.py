"""Checkpoint writes are atomic and reads are safe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from kdlab.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint_file


def test_atomic_save_round_trips(tmp_path: Path):
    path = atomic_save({"model": {"w": torch.arange(3.0)}, "epoch": 2}, tmp_path / "c.pt")
    data = load_checkpoint_file(path)
    assert data["epoch"] == 2 and torch.equal(data["model"]["w"], torch.arange(3.0))


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = atomic_save({"epoch": 1}, tmp_path / "last.pt")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file is cleaned up"


def test_truncated_file_is_a_clear_error(tmp_path: Path):
    path = atomic_save({"epoch": 1, "w": torch.zeros(1000)}, tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt torch archive"):
        load_checkpoint_file(path)


class _Evil:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickled_objects_are_refused_with_the_opt_in_named(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="--unsafe-load"):
        load_checkpoint_file(path)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint_file(tmp_path / "nope.pt")
