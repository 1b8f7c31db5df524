"""Tiny configs and runners shared by the fault tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

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
