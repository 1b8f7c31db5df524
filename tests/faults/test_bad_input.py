"""Bad input stops before training with one clear line and exit 2: unsafe pickles, changed configs, mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _fault_helpers import TINY, empty_config, train

from kdlab.cli.main import main
from kdlab.engine.checkpoint import load_checkpoint_file

KD = "distill.terms=[{name: ce, weight: 0.5}, {name: kd, weight: 0.5}]"


class Payload:
    """Any non-tensor Python object makes a checkpoint need full unpickling."""

    def __init__(self) -> None:
        self.note = "not just weights"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished resnet8 run on the 4-class synthetic data."""
    out = tmp_path_factory.mktemp("bad_input") / "teacher"
    assert train(out, "trainer.epochs=1").completed
    return out


def cli(tmp_path: Path, *argv: str) -> list[str]:
    return ["train", str(empty_config(tmp_path)), *TINY, "trainer.epochs=1", f"trainer.out_dir={tmp_path / 'run'}", *argv]


def failure(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def pickled_checkpoint(path: Path, teacher_run: Path) -> Path:
    state = load_checkpoint_file(teacher_run / "checkpoints" / "best.pt")
    torch.save({"model": state["model"], "payload": Payload()}, path)
    return path


def test_resume_from_a_pickled_checkpoint_names_the_opt_in(tmp_path: Path, teacher_run: Path, capsys):
    evil = pickled_checkpoint(tmp_path / "evil.pt", teacher_run)
    err = failure(capsys, cli(tmp_path, "--resume", str(evil)))
    assert "evil.pt" in err and "--unsafe-load" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_pickled_teacher_checkpoint_needs_unsafe_load(tmp_path: Path, teacher_run: Path, capsys):
    evil = pickled_checkpoint(tmp_path / "evil.pt", teacher_run)
    teacher = ["teacher.name=resnet8", f"teacher.checkpoint={evil}", KD]
    err = failure(capsys, cli(tmp_path, *teacher))
    assert "evil.pt" in err and "--unsafe-load" in err
    assert not (tmp_path / "run").exists()
    # the opt-in reaches the teacher loader: the same file now trains
    assert main(cli(tmp_path, *teacher, "--unsafe-load", "trainer.progress=none")) == 0
    assert (tmp_path / "run" / "final.json").exists()


def test_resume_with_a_changed_config_refuses_unless_forced(tmp_path: Path, capsys):
    base = cli(tmp_path, "trainer.epochs=2", "trainer.stop_after_steps=3", "trainer.progress=none")
    assert main(base) == 0
    changed = cli(tmp_path, "trainer.epochs=2", "optim.lr=0.1", "trainer.progress=none", "--resume", "auto")
    err = failure(capsys, changed)
    assert "optim.lr" in err and "--resume-force" in err
    assert main([*changed, "--resume-force"]) == 0
    ckpt = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["optim"]["lr"] == 0.1


def test_dataset_with_other_classes_than_the_teacher(tmp_path: Path, teacher_run: Path, capsys):
    five_classes = ["data.synthetic_classes=5", f"teacher.checkpoint={teacher_run}", KD]
    err = failure(capsys, cli(tmp_path, *five_classes))
    assert "fc.weight: checkpoint [4, 64] vs model [5, 64]" in err and "the dataset's 5 classes" in err
    # told the teacher's class count, the logit-based terms still refuse: the classes differ
    err = failure(capsys, cli(tmp_path, *five_classes, "teacher.num_classes=4"))
    assert "teacher has 4 classes but the student has 5" in err


def test_teacher_checkpoint_of_another_architecture(tmp_path: Path, teacher_run: Path, capsys):
    ckpt = teacher_run / "checkpoints" / "best.pt"
    err = failure(capsys, cli(tmp_path, "teacher.name=resnet14", f"teacher.checkpoint={ckpt}", KD))
    # the checkpoint file stores its architecture: a contradicting teacher.name is refused before loading
    assert "teacher.name='resnet14' contradicts" in err and "('resnet8')" in err and "best.pt" in err


def test_teacher_without_a_classifier_for_a_logit_term(tmp_path: Path, teacher_run: Path, capsys):
    # an embedding-only teacher (64-wide embedding, no head) cannot feed KD's 4 student logits;
    # embedding terms instead project the student (every registered one builds a head or an adapter)
    err = failure(capsys, cli(tmp_path, f"teacher.checkpoint={teacher_run}", "teacher.embedding_only=true", KD))
    assert "compare logits, but teacher.embedding_only=true removed the teacher's classifier" in err
