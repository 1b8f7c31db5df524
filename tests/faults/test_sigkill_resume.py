"""SIGKILL at many moments of a run (in a step, an evaluation, a checkpoint or metrics write): every
time, ``--resume auto`` continues from a checkpoint that loads, and the run ends bitwise equal to one
that was never killed."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _fault_helpers import TINY, assert_bitwise_equal, empty_config, kdlab_command, last_weights, subprocess_env, train

from kdlab.engine.checkpoint import load_checkpoint_file

#: 6 steps per epoch, a checkpoint and a metrics row every epoch: writes are a good part of the time
EPOCHS = ["trainer.epochs=40", "trainer.keep_last=2"]
KILLS = 8


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(kdlab_command(*argv), cwd=cwd, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, started: Path, delay: float) -> bool:
    """SIGKILL ``delay`` s after ``started`` appears; False when the run finished first."""
    deadline = time.monotonic() + 300
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    end = time.monotonic() + delay
    while time.monotonic() < end and proc.poll() is None:
        time.sleep(0.005)
    if proc.poll() is not None:
        proc.communicate()
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return True


@pytest.mark.slow
def test_sigkill_at_many_points_always_resumes_to_the_same_weights(tmp_path: Path):
    run = tmp_path / "run"
    argv = ["train", str(empty_config(tmp_path)), *TINY, *EPOCHS, f"trainer.out_dir={run}"]
    delays = random.Random(21).sample([0.02 * i for i in range(1, 40)], KILLS)
    kills, in_a_write = 0, 0
    for delay in delays:
        proc = _start([*argv, "--resume", "auto"], tmp_path)
        # config.yaml is written just before the first step of this process
        if not _kill_after(proc, run / "config.yaml", delay):
            break
        kills += 1
        leftovers = list((run / "checkpoints").glob(".*.tmp")) if (run / "checkpoints").is_dir() else []
        in_a_write += bool(leftovers)
        last = run / "checkpoints" / "last.pt"
        if last.exists():
            state = load_checkpoint_file(last)  # what a kill leaves always loads
            assert 1 <= state["epoch"] <= 40
        (run / "config.yaml").unlink(missing_ok=True)  # the next process's start marker
    finished = subprocess.run([*kdlab_command(*argv, "--resume", "auto")], cwd=tmp_path, env=subprocess_env(),
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert kills >= KILLS // 2, f"only {kills} kills landed before the run finished"
    print(f"\n{kills} SIGKILLs, {in_a_write} of them during a checkpoint write")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses' single thread
    try:
        reference = train(tmp_path / "reference", *EPOCHS)
    finally:
        torch.set_num_threads(threads)
    assert_bitwise_equal(last_weights(reference.out_dir), last_weights(run))
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 40  # one row per epoch: nothing doubled by the kills, nothing lost
