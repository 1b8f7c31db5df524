"""Tiny configs and runners shared by the fault tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import torch

from kdlab.config import load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer, TrainResult

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "data.name=synthetic",
    "data.synthetic_train=96",
    "data.synthetic_test=32",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    "data.batch_size=16",
    "data.crop_padding=1",
    "data.num_workers=0",
    "model.name=resnet8",
    "trainer.progress=none",
    "trainer.device=cpu",
    "optim.lr=0.05",
    "schedule.name=cosine",
]


def train(out: Path, *overrides: str, resume: Optional[str] = None) -> TrainResult:
    cfg = load_config(None, [*TINY, f"trainer.out_dir={out}", *overrides])
    return Trainer(cfg).fit(resume=resume)


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run / "checkpoints" / "last.pt")["model"]


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def empty_config(folder: Path) -> Path:
    path = folder / "empty.yaml"
    path.write_text("{}\n")
    return path


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def kdlab_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "kdlab", *argv]


def run_kdlab(*argv: str, cwd: Path, timeout: float = 180.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        kdlab_command(*argv), cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300.0) -> None:
    """Poll until ``path`` exists; fail the test if ``proc`` ends first or it takes longer than ``seconds``."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before {path} appeared\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.02)


class TrainingStarted(AssertionError):
    """A Trainer was built although validation should have refused the config first."""


@pytest.fixture(scope="module")
def no_training():
    """Any Trainer that gets built fails the test: validation must refuse first."""
    from kdlab.engine import trainer

    patch = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise TrainingStarted("a Trainer was built: the invalid value passed validation")

    patch.setattr(trainer.Trainer, "__init__", refuse)
    yield
    patch.undo()


def fuzz_settings(max_examples: int):
    """hypothesis settings of the fault fuzzers: derandomized (CI sees the same inputs every run), no database."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class InputCounter(dict):
    """How many fuzzed inputs of each kind a module tried; printed once at its end (pytest -s)."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title

    def add(self, kind: str) -> None:
        self[kind] = self.get(kind, 0) + 1

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.items()))
        return f"{self.title}: {sum(self.values())} ({kinds})"
