"""The student of a run, alone (kdlab.deploy.student): what export and profile start from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.checkpoint_io import CheckpointError, load_checkpoint_file
from kdlab.config import ConfigError
from kdlab.deploy import DataFacts, load_student, resolve_checkpoint
from kdlab.engine.trainer import train

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
TINY = ["trainer.epochs=1", "trainer.progress=none", "data.subset=64", "trainer.device=cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    teacher = root / "teacher"
    train(DEMO / "teacher.yaml", [*TINY, f"trainer.out_dir={teacher}"])
    kd = root / "fitnet"
    train(DEMO / "fitnet.yaml", [*TINY, f"trainer.out_dir={kd}", f"teacher.checkpoint={teacher / 'checkpoints' / 'best.pt'}",
                                 "distill.terms=[{name: ce}, {name: fitnet, weight: 100, regressor: always}]"])
    return {"teacher": teacher, "fitnet": kd}


def test_checkpoints_record_the_input_facts_of_the_data(runs):
    state = load_checkpoint_file(runs["fitnet"] / "checkpoints" / "last.pt")
    facts = DataFacts.from_dict(state["data_facts"])
    assert facts.num_classes == 10 and facts.classes == [str(d) for d in range(10)]
    assert facts.in_chans == 1 and facts.image_size == 8 and len(facts.mean) == len(facts.std) == 1
    assert DataFacts.from_dict(facts.to_dict()) == facts


def test_the_student_alone_from_a_run_folder_or_its_checkpoint(runs):
    run = runs["fitnet"]
    from_folder = load_student(run)
    assert from_folder.checkpoint == run / "checkpoints" / "best.pt" and from_folder.run_dir == run
    from_file = load_student(run / "checkpoints" / "last.pt")
    assert from_file.run_dir == run and from_file.epoch == 1
    assert not from_folder.model.training and from_folder.architecture == "resnet8"
    # only the student's weights: FitNet's regressor lives in the checkpoint's 'method' entry, not here
    state = load_checkpoint_file(run / "checkpoints" / "best.pt")
    assert state["method"] and set(from_folder.model.state_dict()) == set(state["model"])
    x = from_folder.example_input(3)
    assert x.shape == (3, 1, 8, 8)
    with torch.inference_mode():
        assert torch.equal(from_folder.model(x), from_file.model(x))  # best == last after one epoch


def test_bad_paths_and_files_are_one_clear_error(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint"):
        resolve_checkpoint(tmp_path / "absent")
    with pytest.raises(ConfigError, match="not a kdlab run folder"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="checkpoint choice 'first'"):
        resolve_checkpoint(runs["fitnet"], "first")
    bare = tmp_path / "bare.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, bare)
    with pytest.raises(CheckpointError, match="no 'config' entry"):
        load_student(bare)
    state = load_checkpoint_file(runs["fitnet"] / "checkpoints" / "last.pt")
    state["model"] = {k: v[:1] if v.ndim else v for k, v in state["model"].items()}
    wrong = tmp_path / "wrong.pt"
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="do not fit model.name=resnet8"):
        load_student(wrong)
