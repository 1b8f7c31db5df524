"""Preemption: SIGTERM mid-epoch -> checkpoint + exit 3 -> --resume auto ends bitwise equal; time limits."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _fault_helpers import (
    TINY,
    assert_bitwise_equal,
    empty_config,
    kdlab_command,
    last_weights,
    run_kdlab,
    subprocess_env,
    train,
    wait_for,
)

from kdlab.engine import trainer as trainer_module
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import EXIT_PREEMPTED

# 800 samples / batch 4 = 200 steps per epoch: long enough that a signal lands mid-epoch
LONG_EPOCHS = ["data.synthetic_train=800", "data.batch_size=4", "data.synthetic_size=4", "trainer.epochs=2"]
STEPS_PER_EPOCH = 200


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_exits_3_and_resumes_bitwise(tmp_path: Path):
    config = str(empty_config(tmp_path))
    run = tmp_path / "run"
    argv = ["train", config, *TINY, *LONG_EPOCHS, f"trainer.out_dir={run}", "trainer.progress=lines"]
    proc = subprocess.Popen(
        kdlab_command(*argv), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # best.pt is copied right after epoch 0's last.pt: from then on the run is inside epoch 1
    wait_for(run / "checkpoints" / "best.pt", proc)
    time.sleep(0.2)  # let epoch 1 take a few steps (it has 200)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_PREEMPTED, f"{out}\n{err}"
    assert "stopped by signal SIGTERM at epoch 1 step" in out and "--resume auto" in out, out
    cut = load_checkpoint_file(run / "checkpoints" / "last.pt")
    assert cut["epoch"] == 1 and 0 < cut["step"] < STEPS_PER_EPOCH, (cut["epoch"], cut["step"])

    resumed = run_kdlab(*argv, "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {run / 'checkpoints' / 'last.pt'} at epoch 1 step {cut['step']}" in resumed.stdout

    # the uninterrupted reference, with the subprocesses' single thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = train(tmp_path / "reference", *LONG_EPOCHS)
    finally:
        torch.set_num_threads(threads)
    assert reference.completed
    assert_bitwise_equal(last_weights(reference.out_dir), last_weights(run))
    assert (run / "final.json").exists()


class FakeClock:
    """Each reading is a minute later than the one before."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 60.0
        return self.now


def test_time_limit_stops_cleanly_before_the_budget_runs_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reference = train(tmp_path / "reference", "trainer.epochs=2")
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "_now", FakeClock())
        stopped = train(tmp_path / "run", "trainer.epochs=2", "trainer.time_limit=5m")
    assert not stopped.completed and stopped.exit_code == EXIT_PREEMPTED
    cut = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (cut["epoch"], cut["step"]) < (2, 0)
    assert cut["global_step"] < 12  # stopped well before the 12 steps of the run
    # time_limit is operational: the resumed run may drop it, and ends exactly where the reference did
    resumed = train(tmp_path / "run", "trainer.epochs=2", resume="auto")
    assert resumed.completed
    assert_bitwise_equal(last_weights(reference.out_dir), last_weights(tmp_path / "run"))
