"""Issue 21's findings, each a named regression test: one clear line and exit 2 (or the documented code),
never a traceback; nothing lost, nothing overwritten, no code run from data.

The findings that need more than one command line live beside this file:

| finding | test |
|---|---|
| CIFAR batches unpickled with plain pickle | test_hostile_files.py::test_a_crafted_cifar_batch_cannot_run_code |
| a finished run silently trained over | test_run_folder_guard.py |
| special files replaced by outputs | test_output_paths.py |
| a torn metrics.jsonl line breaks --resume auto | test_hostile_files.py::test_resume_auto_after_a_kill_during_a_metrics_append |
| files that are not checkpoints, through every flag and key | test_checkpoint_reader.py |
| --resume-force into another architecture / class count / damaged RNG | test_resume_force_mismatch.py |
| --resume auto with a damaged last.pt | test_run_folder_guard.py::test_resume_auto_falls_back_to_the_newest_kept_checkpoint |
| Ctrl-C x3, SIGINT/SIGTERM before training, NaN exit code | test_exit_codes.py |
| SIGKILL at any moment | test_sigkill_resume.py |
| values checked against the built run (classes, channels, timm, frozen, out_dir, best_metric) | test_preflight.py |
| config values, YAML | test_config_values.py, test_fuzz_config_semantics.py |
| every reader fuzzed | test_fuzz_readers.py |

Here: the rows of the issue's list that are one command each, on ``configs/demo/student.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kdlab.cli.main import main

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
STUDENT = str(DEMO / "student.yaml")
ONE_EPOCH = ["trainer.epochs=1", "data.subset=64", "trainer.progress=none", "trainer.device=cpu"]


def refused(capsys, argv: list[str]) -> str:
    """Run the command; it must exit 2 with exactly one line on stderr and no traceback."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}: {err}"
    # argparse's refusals print their usage block first (lines "usage: ..." and indented ones), then one line
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def train_argv(tmp_path: Path, *overrides: str) -> list[str]:
    return ["train", STUDENT, *ONE_EPOCH, f"trainer.out_dir={tmp_path / 'run'}", *overrides]


@pytest.mark.parametrize("override, named", [
    ("trainer.time_limit=banana", "trainer.time_limit"),
    ("trainer.time_limit=-3h", "trainer.time_limit"),
    ("trainer.seed=99999999999999999999", "trainer.seed"),
    ("distill.terms=[{name: [ce]}]", "distill.terms"),
    ("data.image_size=100000", "data.image_size"),
    ("eval.knn_k=[0]", "eval.knn_k"),
    ("eval.knn_k=[-5]", "eval.knn_k"),
    ("eval.knn_k=[]", "eval.knn_k"),
    ("eval.knn_temperature=0", "eval.knn_temperature"),
    ("distill.terms=[{name: ce, weight: -1}]", "weight"),
    ("trainer.epochs=1:30", "trainer.epochs"),
    ("trainer.best_metric=nonexistent", "trainer.best_metric"),
    ("model.num_classes=5", "model.num_classes"),
    ("model.frozen=true", "model.frozen"),
    ("trainer.out_dir=/dev/null", "trainer.out_dir"),
], ids=lambda value: value if "=" in str(value) else "")
def test_a_value_that_type_checks_but_is_wrong(tmp_path, capsys, override, named):
    line = refused(capsys, train_argv(tmp_path, override))
    assert named in line, line
    if "out_dir=/dev/null" not in override:
        assert not (tmp_path / "run" / "checkpoints").exists()


def test_one_channel_digits_with_a_three_channel_student(tmp_path, capsys):
    line = refused(capsys, train_argv(tmp_path, "data.name=digits", "data.subset=null", "model.name=resnet8",
                                      "model.kwargs={in_chans: 3}"))
    assert "in_chans" in line


def test_timm_student_without_timm_installed(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)
    line = refused(capsys, train_argv(tmp_path, "model.name=timm:resnet18"))
    assert "timm" in line and "model.name" in line


def test_a_yaml_syntax_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  epochs: [1,\n  lr: 3\n")
    line = refused(capsys, ["train", str(bad)])
    assert str(bad) in line and "line" in line


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        previous, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    line = refused(capsys, ["print-config", str(bomb)])
    assert str(bomb) in line and "alias" in line


@pytest.mark.parametrize("seconds", ["inf", "nan", "0", "-1"])
def test_bench_data_seconds_must_be_finite_and_positive(capsys, seconds):
    line = refused(capsys, ["bench", "data", "--seconds", seconds])
    assert "--seconds" in line


def test_a_folder_given_to_eval_checkpoint_is_named_a_folder(tmp_path, capsys):
    line = refused(capsys, ["eval", STUDENT, "--checkpoint", str(tmp_path)])
    assert "is a folder" in line


def test_report_out_that_is_a_folder(tmp_path, capsys, finished_run):
    (tmp_path / "out").mkdir()
    line = refused(capsys, ["report", str(finished_run), "--out", str(tmp_path / "out")])
    assert str(tmp_path / "out") in line


def test_report_plots_of_a_run_with_an_empty_metrics_file(tmp_path, capsys, finished_run):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "metrics.jsonl").write_text("")
    try:
        code = main(["report", str(run), "--plots", str(tmp_path / "plots")])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert err.count("\n") == 1 and "metrics.jsonl" in err, err


def test_report_names_a_file_that_is_not_utf8(tmp_path, capsys, finished_run):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "metrics.jsonl").write_bytes(b"\xff\xfe{not json\n")
    line = refused(capsys, ["report", str(run)])
    assert "metrics.jsonl" in line


def test_a_symlink_loop_in_an_image_folder_is_not_followed(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "test"):
        for name in ("cat", "dog"):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    os.symlink("..", tmp_path / "images" / "train" / "cat" / "loop")
    try:
        code = main(["data", "info", "data.name=imagefolder", f"data.root={tmp_path / 'images'}"])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 0:
        assert "4 " in captured.out or "4\n" in captured.out, captured.out  # 2 classes x 2 images, not thousands
    else:
        assert code == 2 and "loop" in captured.err, captured.err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", STUDENT, *ONE_EPOCH, f"trainer.out_dir={run}"]) == 0
    return run
