"""Exit codes: 0 done, 2 bad input, 3 stopped early (signal, time limit), 4 diverged; one line each."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _fault_helpers import TINY, empty_config, kdlab_command, subprocess_env, wait_for

from kdlab.cli.main import EXIT_DIVERGED, EXIT_STOPPED, main
from kdlab.engine import trainer as trainer_module
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.stop_signal import CommandInterrupted

LONG_EPOCHS = ["data.synthetic_train=800", "data.batch_size=4", "data.synthetic_size=4", "trainer.epochs=3"]


def _stderr_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_training_starts_is_one_line_and_exit_3(tmp_path, capsys, monkeypatch, signum):
    built = trainer_module.Trainer.__init__

    def signalled_while_building(self, *args, **kwargs):
        os.kill(os.getpid(), signum)  # delivered to the command's handler at the next bytecode
        built(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", signalled_while_building)
    previous = signal.getsignal(signum)
    code = main(["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={tmp_path / 'run'}"])
    err = _stderr_line(capsys)
    assert code == EXIT_STOPPED == 3
    assert f"stopped by {signal.Signals(signum).name} before training started; nothing was trained" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert signal.getsignal(signum) is previous  # an in-process caller gets its own handler back


def test_commands_other_than_train_say_they_stopped(tmp_path, capsys, monkeypatch):
    from kdlab.cli import config_cmd

    def interrupted(args):
        raise CommandInterrupted(signal.SIGTERM)

    monkeypatch.setattr(config_cmd, "run", interrupted)
    code = main(["print-config", str(empty_config(tmp_path))])
    err = _stderr_line(capsys)
    assert code == 3 and "kdlab print-config: stopped by SIGTERM (run the command again)" in err


def test_a_diverged_run_exits_4_naming_only_files_that_exist(tmp_path, capsys, monkeypatch):
    from kdlab.methods.terms.ce import CrossEntropyTerm

    monkeypatch.setattr(CrossEntropyTerm, "forward", lambda self, step: step.student.logits.sum() * float("inf"))
    run = tmp_path / "run"
    code = main(["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={run}", "trainer.epochs=1"])
    err = _stderr_line(capsys)
    assert code == EXIT_DIVERGED == 4
    assert "became NaN/Inf at epoch 0 step 0" in err
    assert f"no checkpoint of this run exists yet (it diverged before the end of its first epoch): nothing to resume in {run}" in err
    assert not (run / "checkpoints").exists()


def test_a_diverged_run_after_a_checkpoint_names_it(tmp_path, capsys, monkeypatch):
    from kdlab.methods.terms.ce import CrossEntropyTerm

    honest = CrossEntropyTerm.forward
    calls = {"n": 0}

    def late_inf(self, step):
        calls["n"] += 1
        loss = honest(self, step)
        return loss * float("inf") if calls["n"] > 6 else loss  # the second epoch (6 steps per epoch)

    monkeypatch.setattr(CrossEntropyTerm, "forward", late_inf)
    run = tmp_path / "run"
    code = main(["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={run}", "trainer.epochs=2"])
    err = _stderr_line(capsys)
    last = run / "checkpoints" / "last.pt"
    assert code == 4 and f"last good checkpoint kept: {last}" in err
    assert load_checkpoint_file(last)["epoch"] == 1


def test_a_huge_learning_rate_diverges_with_exit_4(tmp_path, capsys):
    code = main(["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={tmp_path / 'run'}",
                 "trainer.epochs=3", "optim.lr=1e30"])
    err = _stderr_line(capsys)
    assert code == 4 and "NaN/Inf" in err


@pytest.mark.slow
def test_ctrl_c_pressed_three_times_saves_the_checkpoint_and_exits_3(tmp_path):
    run = tmp_path / "run"
    argv = ["train", str(empty_config(tmp_path)), *TINY, *LONG_EPOCHS, f"trainer.out_dir={run}", "trainer.progress=lines"]
    # its own process group, as a terminal's Ctrl-C reaches every process of the foreground group
    proc = subprocess.Popen(kdlab_command(*argv), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(run / "checkpoints" / "best.pt", proc)
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, f"{out}\n{err}"
    assert "Traceback" not in err and "stopped by signal SIGINT at epoch" in out, f"{out}\n{err}"
    assert load_checkpoint_file(run / "checkpoints" / "last.pt")["epoch"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.8, 2.0])
def test_sigterm_during_start_up_is_one_line_and_exit_3(tmp_path, delay):
    argv = ["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(kdlab_command(*argv), cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # python is importing torch (a signal inside an import exits at once) or building the run
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, f"{out}\n{err}"
    assert err.count("\n") == 1 and "stopped by SIGTERM" in err and "Traceback" not in err, err
