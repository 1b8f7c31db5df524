"""A run folder is never trained over silently, and ``--resume auto`` survives a damaged last.pt (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _fault_helpers import TINY, assert_bitwise_equal, empty_config, last_weights

from kdlab.cli.main import main

STEPS_PER_EPOCH = 6  # 96 synthetic images, batch 16


def _argv(tmp_path: Path, run: Path, *extra: str) -> list[str]:
    return ["train", str(empty_config(tmp_path)), *TINY, "trainer.epochs=3", f"trainer.out_dir={run}", *extra]


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    run = root / "run"
    assert main(_argv(root, run, "trainer.keep_last=3")) == 0
    return run


def test_a_finished_run_is_not_trained_over(tmp_path, finished, capsys):
    before = {name: (finished / name).read_bytes() for name in ("final.json", "metrics.jsonl")}
    err = _one_line_exit_2(capsys, _argv(tmp_path, finished, "trainer.keep_last=3"))
    assert "already holds a run" in err and "--resume auto" in err and "--overwrite" in err
    assert {name: (finished / name).read_bytes() for name in before} == before


def test_a_run_whose_last_checkpoint_is_gone_is_refused_then_overwritten_on_request(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_argv(tmp_path, run, "trainer.epochs=1")) == 0
    (run / "checkpoints" / "last.pt").unlink()
    final = (run / "final.json").read_bytes()
    for extra in ([], ["--resume", "auto"]):
        err = _one_line_exit_2(capsys, _argv(tmp_path, run, "trainer.epochs=1", *extra))
        assert "--overwrite" in err and str(run) in err
    assert (run / "final.json").read_bytes() == final
    err = _one_line_exit_2(capsys, _argv(tmp_path, run, "trainer.epochs=1", "--overwrite", "--resume", "auto"))
    assert "cannot be combined" in err
    assert main(_argv(tmp_path, run, "trainer.epochs=1", "--overwrite")) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and (run / "checkpoints" / "last.pt").is_file()  # one run's metrics, not two


def test_only_a_partial_first_checkpoint_write(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".last.pt.1234.tmp").write_bytes(b"PK\x03\x04 half a zip")
    err = _one_line_exit_2(capsys, _argv(tmp_path, run, "trainer.epochs=1"))
    assert ".last.pt.1234.tmp" in err
    # nothing of the run was saved: --resume auto starts it, and the stray partial file stays untouched
    assert main(_argv(tmp_path, run, "trainer.epochs=1", "--resume", "auto")) == 0
    assert (run / "final.json").is_file()


def test_resume_auto_falls_back_to_the_newest_kept_checkpoint(tmp_path, finished, capsys):
    run = tmp_path / "run"
    argv = _argv(tmp_path, run, "trainer.keep_last=3")
    assert main([*argv, f"trainer.stop_after_steps={2 * STEPS_PER_EPOCH + 1}"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch_*.pt")) == ["epoch_0001.pt", "epoch_0002.pt"]
    damaged = run / "checkpoints" / "last.pt"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # a disk error, a copy cut short
    capsys.readouterr()
    assert main([*argv, "--resume", "auto", "trainer.progress=lines"]) == 0
    out = capsys.readouterr().out
    assert "continuing from" in out and "epoch_0002.pt" in out
    # the kept epoch-2 checkpoint resumes exactly: the same weights as the uninterrupted run
    assert_bitwise_equal(last_weights(run), last_weights(finished))


def test_resume_auto_with_no_loadable_checkpoint_names_the_file_and_keeps_it(tmp_path, capsys):
    run = tmp_path / "run"
    argv = _argv(tmp_path, run)
    assert main([*argv, f"trainer.stop_after_steps={STEPS_PER_EPOCH + 1}"]) == 0
    damaged = run / "checkpoints" / "last.pt"
    damaged.write_bytes(b"not a checkpoint at all")
    err = _one_line_exit_2(capsys, [*argv, "--resume", "auto"])
    assert "last.pt" in err and "no loadable checkpoint" in err and "--overwrite" in err
    assert damaged.read_bytes() == b"not a checkpoint at all"


def test_a_folder_given_to_resume_is_named_as_a_folder(tmp_path, finished, capsys):
    err = _one_line_exit_2(capsys, _argv(tmp_path, tmp_path / "new", "--resume", str(finished)))
    assert "a folder, not a checkpoint file" in err
