"""``teacher.checkpoint`` as a kdlab checkpoint file: the architecture comes from the config stored inside it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _fault_helpers import TINY, empty_config, train

from kdlab.cli.main import main
from kdlab.config import ConfigError, load_config
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.engine.checkpoint import load_checkpoint_file

KD = "distill.terms=[{name: ce, weight: 0.5}, {name: kd, weight: 0.5}]"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished wrn_16_1 run (not the default resnet8, so the name must come from the file)."""
    out = tmp_path_factory.mktemp("teacher_file") / "teacher"
    assert train(out, "trainer.epochs=1", "model.name=wrn_16_1", "model.kwargs={drop_rate: 0.0}").completed
    return out


def resolve(*overrides: str) -> tuple:
    return resolve_teacher_source(load_config(None, [*TINY, *overrides]))


def test_a_checkpoint_file_supplies_the_architecture(teacher_run: Path):
    best = teacher_run / "checkpoints" / "best.pt"
    name, checkpoint, kwargs, classes = resolve(f"teacher.checkpoint={best}")
    assert (name, checkpoint, kwargs) == ("wrn_16_1", str(best), {"drop_rate": 0.0})
    assert classes is None  # the run trained on the dataset's classes; the student's dataset supplies them


def test_the_same_name_is_accepted_and_explicit_kwargs_win(teacher_run: Path):
    best = teacher_run / "checkpoints" / "best.pt"
    name, _, kwargs, _ = resolve(f"teacher.checkpoint={best}", "teacher.name=wrn_16_1", "teacher.kwargs={drop_rate: 0.1}")
    assert name == "wrn_16_1" and kwargs == {"drop_rate": 0.1}


@pytest.mark.parametrize("target", ["file", "folder"])
def test_a_contradicting_name_is_an_error_naming_both(teacher_run: Path, target: str):
    source = teacher_run / "checkpoints" / "last.pt" if target == "file" else teacher_run
    with pytest.raises(ConfigError, match=r"teacher.name='resnet8' contradicts .*'wrn_16_1'"):
        resolve(f"teacher.checkpoint={source}", "teacher.name=resnet8")


def test_a_plain_weights_file_still_needs_a_name(tmp_path: Path, teacher_run: Path):
    plain = tmp_path / "weights.pth"
    torch.save({"epoch": 240, "model": load_checkpoint_file(teacher_run / "checkpoints" / "best.pt")["model"]}, plain)
    with pytest.raises(ConfigError, match=r"teacher.name is not set and teacher.checkpoint=.*weights.pth is not a kdlab"):
        resolve(f"teacher.checkpoint={plain}")
    assert resolve(f"teacher.checkpoint={plain}", "teacher.name=wrn_16_1")[0] == "wrn_16_1"


def test_missing_files_and_missing_names_are_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"teacher.checkpoint=.*nope.pt: file not found"):
        resolve(f"teacher.checkpoint={tmp_path / 'nope.pt'}")
    with pytest.raises(ConfigError, match=r"teacher resnet8: teacher.checkpoint is required"):
        resolve("teacher.name=resnet8")


def test_kd_trains_from_a_checkpoint_file_through_the_cli(tmp_path: Path, teacher_run: Path, capsys):
    """The new user's command: ``kdlab train kd.yaml teacher.checkpoint=runs/x/checkpoints/best.pt``."""
    best = teacher_run / "checkpoints" / "best.pt"
    argv = ["train", str(empty_config(tmp_path)), *TINY, "trainer.epochs=1", f"trainer.out_dir={tmp_path / 'kd'}"]
    assert main([*argv, f"teacher.checkpoint={best}", KD]) == 0, capsys.readouterr().err
    assert (tmp_path / "kd" / "final.json").is_file()
    capsys.readouterr()
    code = main([*argv[:-1], f"trainer.out_dir={tmp_path / 'kd2'}", f"teacher.checkpoint={best}", "teacher.name=vgg8", KD])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "'vgg8'" in err and "'wrn_16_1'" in err
