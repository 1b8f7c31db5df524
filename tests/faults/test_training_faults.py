"""NaN gradients, checkpoint rotation, best-by-metric, and data-loader worker crashes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from _fault_helpers import TINY, empty_config, run_kdlab, train
from PIL import Image

from kdlab.config import load_config
from kdlab.data.planners import RandomBatchPlanner
from kdlab.data.standard import StandardTrainStream
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import NonFiniteLossError, Trainer


def test_nan_gradient_stops_before_the_step_naming_the_parameter(tmp_path: Path):
    cfg = load_config(None, [*TINY, f"trainer.out_dir={tmp_path / 'nan'}", "trainer.epochs=2"])
    trainer = Trainer(cfg)
    calls = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == 8 else grad  # epoch 1 step 1 (6 steps per epoch)

    trainer.student.fc.weight.register_hook(poison)
    last = tmp_path / "nan" / "checkpoints" / "last.pt"
    with pytest.raises(NonFiniteLossError, match=r"gradient of student\.fc\.weight became NaN/Inf at epoch 1 step 1"):
        trainer.fit()
    ckpt = load_checkpoint_file(last)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)  # the last good checkpoint, untouched
    for value in ckpt["model"].values():
        assert torch.isfinite(value.float()).all()


def test_nan_through_the_command_is_one_line_and_exit_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from kdlab.cli.main import main
    from kdlab.methods.terms.ce import CrossEntropyTerm

    monkeypatch.setattr(CrossEntropyTerm, "forward", lambda self, step: step.student.logits.sum() * float("inf"))
    code = main(["train", str(empty_config(tmp_path)), *TINY, f"trainer.out_dir={tmp_path / 'run'}", "trainer.epochs=1"])
    err = capsys.readouterr().err
    assert code == 4 and "stopped: loss term(s) ce became NaN/Inf at epoch 0 step 0" in err
    assert "Traceback" not in err


def test_keep_last_rotates_epoch_checkpoints_and_best_follows_the_metric(tmp_path: Path):
    result = train(tmp_path / "run", "trainer.epochs=4", "trainer.keep_last=2")
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*.pt")) == ["best.pt", "epoch_0003.pt", "epoch_0004.pt", "last.pt"]
    assert not list(ckpts.glob(".*.tmp"))  # no leftovers of atomic writes
    assert load_checkpoint_file(ckpts / "epoch_0003.pt")["epoch"] == 3
    assert load_checkpoint_file(ckpts / "last.pt")["epoch"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scores = [row["val_top1"] for row in rows]
    best = load_checkpoint_file(ckpts / "best.pt")
    assert best["best"] == max(scores) == result.best
    assert best["epoch"] == scores.index(max(scores)) + 1  # the first epoch that reached it

    # another metric picks another epoch: the highest train loss is the first epoch's
    train(tmp_path / "loss", "trainer.epochs=3", "trainer.best_metric=train_loss")
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "loss" / "metrics.jsonl").read_text().splitlines()]
    best = load_checkpoint_file(tmp_path / "loss" / "checkpoints" / "best.pt")
    assert best["epoch"] == losses.index(max(losses)) + 1 and best["best"] == max(losses)


class _BrokenDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, key: tuple[int, int]):
        index, _ = key
        if index == 5:
            raise ValueError(f"sample {index} of the broken dataset cannot be read")
        return torch.zeros(3, 4, 4), 0, index


def test_worker_crash_surfaces_its_message(tmp_path: Path):
    stream = StandardTrainStream(
        _BrokenDataset(), RandomBatchPlanner(8, 8, seed=0), slice(0, 8), 0,
        device=torch.device("cpu"), num_workers=1,
    )
    with pytest.raises(ValueError, match="sample 5 of the broken dataset cannot be read"):
        for _ in stream.epoch(0):
            pass


def _write_imagefolder(root: Path, bad: str) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / bad).write_bytes(b"this is not a png")


def test_corrupt_image_in_a_loader_worker_exits_2_naming_the_file(tmp_path: Path):
    root = tmp_path / "images"
    _write_imagefolder(root, "train/b/9_corrupt.png")
    argv = [
        "train", str(empty_config(tmp_path)), "data.name=imagefolder", f"data.root={root}", "data.pipeline=standard",
        "data.image_size=8", "data.num_workers=1", "data.batch_size=13", "data.augment=none", "model.name=resnet8",
        "trainer.device=cpu", "trainer.epochs=1", f"trainer.out_dir={tmp_path / 'run'}",
    ]
    try:
        proc = run_kdlab(*argv, cwd=tmp_path, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("a crashing loader worker hung the run")
    assert proc.returncode == 2, proc.stderr
    assert "9_corrupt.png" in proc.stderr and "DataLoader worker" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
