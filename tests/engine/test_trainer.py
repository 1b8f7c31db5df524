"""The one trainer: outputs, exact resume, frozen teacher, refusal of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.config import ConfigError, load_config
from kdlab.engine.checkpoint import CheckpointError, load_checkpoint_file
from kdlab.engine.trainer import NonFiniteLossError, Trainer

TINY = [
    "data.name=synthetic",
    "data.synthetic_train=96",
    "data.synthetic_test=32",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    "data.batch_size=16",
    "data.augment=crop_flip",
    "data.crop_padding=1",
    "data.num_workers=0",
    "model.name=resnet8",
    "trainer.progress=none",
    "trainer.device=cpu",
    "optim.lr=0.05",
    "schedule.name=cosine",
]


def run(tmp: Path, *extra: str, resume: str | None = None, name: str = "run"):
    cfg = load_config(None, [*TINY, f"trainer.out_dir={tmp / name}", *extra])
    return Trainer(cfg).fit(resume=resume)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(out / "checkpoints" / "last.pt")["model"]


def test_run_folder_has_config_metrics_and_checkpoints(tmp_path: Path):
    result = run(tmp_path, "trainer.epochs=2")
    out = result.out_dir
    assert result.completed and (out / "config.yaml").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("epoch", "train_loss", "val_top1", "val_top5", "lr", "seconds", "train_ce"):
        assert key in rows[0], key
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint_file(out / "checkpoints" / name)
        assert {"model", "epoch", "config", "optimizer", "rng"} <= set(ckpt)


def test_resume_mid_epoch_is_bitwise_exact(tmp_path: Path):
    full = run(tmp_path, "trainer.epochs=2", name="full").out_dir
    # 96 samples / batch 16 = 6 steps per epoch: stop in the middle of epoch 1, twice
    first = run(tmp_path, "trainer.epochs=2", "trainer.stop_after_steps=8", name="cut")
    assert not first.completed
    second = run(tmp_path, "trainer.epochs=2", "trainer.stop_after_steps=2", name="cut", resume="auto")
    assert not second.completed
    last = run(tmp_path, "trainer.epochs=2", name="cut", resume="auto")
    assert last.completed
    a, b = weights(full), weights(last.out_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows_full = (full / "metrics.jsonl").read_text().splitlines()
    rows_cut = (last.out_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows_full) == len(rows_cut) == 2


def test_resume_from_a_missing_path_is_an_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match="refusing to start fresh"):
        run(tmp_path, "trainer.epochs=1", resume=str(tmp_path / "nope.pt"))


def test_fresh_run_into_a_finished_folder_is_refused(tmp_path: Path):
    run(tmp_path, "trainer.epochs=1")
    with pytest.raises(ConfigError, match="--resume auto"):
        run(tmp_path, "trainer.epochs=1")


def test_resume_with_a_changed_config_names_the_keys(tmp_path: Path):
    run(tmp_path, "trainer.epochs=2", "trainer.stop_after_steps=3")
    with pytest.raises(ConfigError, match="optim.lr"):
        run(tmp_path, "trainer.epochs=2", "optim.lr=0.1", resume="auto")


def test_teacher_is_bitwise_unchanged_and_in_eval_mode(tmp_path: Path):
    teacher = run(tmp_path, "trainer.epochs=1", name="teacher").out_dir
    before = load_checkpoint_file(teacher / "checkpoints" / "best.pt")["model"]
    cfg = load_config(
        None,
        [*TINY, f"trainer.out_dir={tmp_path / 'student'}", "trainer.epochs=1",
         f"teacher.checkpoint={teacher}", "distill.terms=[{name: ce, weight: 0.1}, {name: kd, weight: 0.9}]"],
    )
    trainer = Trainer(cfg)
    trainer.fit()
    assert not trainer.teacher.training
    after = trainer.teacher.model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key].cpu()), key
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    assert all(p.grad is None for p in trainer.teacher.parameters())


def test_nan_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = load_config(None, [*TINY, f"trainer.out_dir={tmp_path / 'nan'}", "trainer.epochs=2"])
    trainer = Trainer(cfg)
    original = trainer.method.forward
    calls = {"n": 0}

    def poisoned(batch, **kw):
        out = original(batch, **kw)
        calls["n"] += 1
        if calls["n"] == 8:  # epoch 1, after last.pt of epoch 0 was written
            out.terms["ce"] = out.terms["ce"] * float("nan")
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(trainer.method, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"ce.*epoch 1 step 1"):
        trainer.fit()
    ckpt = load_checkpoint_file(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 0
    for value in ckpt["model"].values():
        assert torch.isfinite(value.float()).all()
