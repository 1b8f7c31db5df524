"""The `kdlab` command: shapes of the commands and exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdlab.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEACHER_CFG = str(CONFIGS / "demo" / "teacher.yaml")
STUDENT_CFG = str(CONFIGS / "demo" / "student.yaml")

TINY = [
    "data.name=synthetic", "data.synthetic_train=64", "data.synthetic_test=32", "data.synthetic_classes=4",
    "data.synthetic_size=8", "data.batch_size=16", "data.num_workers=0", "data.subset=null", "model.name=resnet8",
    "trainer.device=cpu", "trainer.epochs=1",
]


def test_print_config_prints_the_resolved_yaml(capsys: pytest.CaptureFixture[str]):
    assert main(["print-config", TEACHER_CFG, "trainer.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and "name: digits" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["print-config", TEACHER_CFG, "trainer.epoch=3"], "did you mean trainer.epochs"),
        (["print-config", "no/such/config.yaml"], "config file not found"),
        (["print-config", TEACHER_CFG, "optim.lr=fast"], "optim.lr must be a number"),
        (["train", TEACHER_CFG, "distill.terms=[{name: kdd}]"], "did you mean kd"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, message, capsys: pytest.CaptureFixture[str]):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_command_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_resume_from_a_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["train", TEACHER_CFG, *TINY, f"trainer.out_dir={tmp_path}", "--resume", "nope.pt"])
    assert code == 2 and "nope.pt" in capsys.readouterr().err


def test_list_models_and_methods(capsys: pytest.CaptureFixture[str]):
    assert main(["list-models"]) == 0
    models = capsys.readouterr().out
    assert "resnet56" in models and "wrn_40_2" in models
    assert main(["list-methods"]) == 0
    methods = capsys.readouterr().out
    assert "kd" in methods and "Hinton" in methods


def test_train_then_eval_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    assert main(["train", STUDENT_CFG, *TINY, f"trainer.out_dir={out}", "trainer.progress=lines"]) == 0
    assert (out / "checkpoints" / "best.pt").exists()
    capsys.readouterr()
    ckpt = str(out / "checkpoints" / "best.pt")
    assert main(["eval", STUDENT_CFG, *TINY, "--checkpoint", ckpt, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["val_top1"] <= 100.0


def test_console_script_module_entry_runs():
    proc = subprocess.run([sys.executable, "-m", "kdlab", "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "kdlab" in proc.stdout
