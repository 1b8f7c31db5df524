"""``--resume OTHER.pt --resume-force``: a checkpoint of another architecture, class count, or with a
damaged RNG state is one line naming the checkpoint (and the tensor and shapes), exit 2; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _fault_helpers import TINY, empty_config, train

from kdlab.cli.main import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("source") / "run"
    train(run, "trainer.epochs=1")
    return run / "checkpoints" / "last.pt"


def _resume_forced(tmp_path: Path, capsys, checkpoint: Path, *overrides: str) -> str:
    run = tmp_path / "target"
    argv = ["train", str(empty_config(tmp_path)), *TINY, "trainer.epochs=2", f"trainer.out_dir={run}", *overrides,
            "--resume", str(checkpoint), "--resume-force"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
    return err


def test_another_architecture(tmp_path, capsys, checkpoint):
    err = _resume_forced(tmp_path, capsys, checkpoint, "model.name=resnet14")
    assert f"--resume {checkpoint}: the checkpoint does not fit this run" in err


def test_another_class_count_names_the_tensor_and_both_shapes(tmp_path, capsys, checkpoint):
    err = _resume_forced(tmp_path, capsys, checkpoint, "data.synthetic_classes=6")
    assert "fc.weight" in err and "[4, 64]" in err and "[6, 64]" in err


def test_a_damaged_rng_state(tmp_path, capsys, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["rng"] = {"torch": torch.zeros(3)}
    state.pop("rng_ranks", None)
    damaged = tmp_path / "damaged.pt"
    torch.save(state, damaged)
    err = _resume_forced(tmp_path, capsys, damaged)
    assert f"--resume {damaged}: the checkpoint does not fit this run" in err


def test_a_checkpoint_whose_config_is_not_a_mapping(tmp_path, capsys, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["config"] = ["not", "a", "config"]
    odd = tmp_path / "odd.pt"
    torch.save(state, odd)
    code = main(["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={tmp_path / 'x'}", "--resume", str(odd)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "differs from the checkpoint's in config" in err, err
