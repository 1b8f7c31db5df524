"""Both SSKD phases through the one trainer on tiny synthetic data (CPU, seconds)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer, read_metrics
from kdlab.methods.build import prerequisites
from kdlab.methods.sskd import ProjectionHead, load_head_state, ss_top1

from sskd_testkit import BATCH, model_state, same_tensors, sskd_config, teacher_config

HEAD = ("head_epochs: 6", "head_lr: 0.1", "head_milestones: []")


def batchnorm_modes(root: nn.Module, seen: list[bool]) -> list:
    """Record the mode every BatchNorm of ``root`` runs in, at every forward."""
    return [
        m.register_forward_pre_hook(lambda module, args: seen.append(module.training))
        for m in root.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


@dataclass
class Runs:
    teacher: Path
    teacher_weights: dict
    phase1: Trainer
    phase1_modes: list
    phase2: Trainer
    phase2_modes: list
    head_before: dict
    student_head_before: dict


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("sskd")
    teacher = Trainer(teacher_config(root / "teacher")).fit().out_dir
    teacher_weights = model_state(teacher / "checkpoints" / "best.pt")
    cfg = sskd_config(teacher, root / "student", *HEAD)

    (need,) = prerequisites(cfg)
    phase1 = Trainer(need.config)
    phase1_modes: list[bool] = []
    batchnorm_modes(phase1.student, phase1_modes)
    assert phase1.fit().completed and need.produces.exists()

    phase2 = Trainer(cfg)
    term = phase2.method.terms["sskd"]
    head_before = {k: v.clone() for k, v in term.teacher_head.state_dict().items()}
    student_head_before = {k: v.clone() for k, v in term.student_head.state_dict().items()}
    phase2_modes: list[bool] = []
    batchnorm_modes(phase2.teacher, phase2_modes)
    assert phase2.fit().completed
    return Runs(teacher, teacher_weights, phase1, phase1_modes, phase2, phase2_modes, head_before, student_head_before)


def test_phase1_head_learns_the_rotation_task_well_above_chance(runs: Runs):
    rows = read_metrics(runs.phase1.out_dir)
    chance = 100.0 / BATCH
    final = rows[-1]["val_sskd_head_ss_top1"]
    assert final > 3 * chance, (final, chance)
    assert rows[-1]["train_sskd_head/ss_top1"] > 2 * chance
    assert rows[-1]["train_sskd_head"] < rows[0]["train_sskd_head"]
    torch.manual_seed(0)
    untrained = ss_top1(runs.phase1.student, ProjectionHead(final_dim(runs)), runs.phase1.data.eval, BATCH)
    assert final > untrained + 5.0, (final, untrained)  # ~53% vs ~42% for a random head


def final_dim(runs: Runs) -> int:
    return runs.phase1.method.terms["sskd_head"].head.dim


def test_phase1_teacher_backbone_is_frozen(runs: Runs):
    trained = model_state(runs.phase1.out_dir / "checkpoints" / "last.pt")
    unwrapped = {k.removeprefix("model."): v for k, v in trained.items()}
    assert same_tensors(unwrapped, runs.teacher_weights)  # parameters and BatchNorm buffers, bitwise
    # BatchNorm in eval mode at every forward; by default it does not run at all: the frozen network
    # runs a copy with its (eval-mode) BatchNorm folded into the convolutions
    assert not any(runs.phase1_modes)
    assert runs.phase1_modes or "folded into" in runs.phase1.student.fold_note
    assert not any(p.requires_grad for p in runs.phase1.student.parameters())
    trainable = {id(p) for group in runs.phase1.optimizer.param_groups for p in group["params"]}
    assert trainable == {id(p) for p in runs.phase1.method.terms["sskd_head"].head.parameters()}


def test_phase2_teacher_and_its_head_stay_frozen(runs: Runs):
    teacher_now = {k.removeprefix("model."): v for k, v in runs.phase2.teacher.state_dict().items()}
    assert same_tensors(teacher_now, runs.teacher_weights)
    assert not any(runs.phase2_modes)
    assert runs.phase2_modes or "folded into" in runs.phase2.teacher.fold_note
    term = runs.phase2.method.terms["sskd"]
    assert same_tensors(term.teacher_head.state_dict(), runs.head_before)
    phase1_head = load_head_state(runs.phase1.out_dir)
    assert same_tensors(term.teacher_head.state_dict(), phase1_head)  # the head phase 1 trained
    assert not term.teacher_head.training and not any(p.requires_grad for p in term.teacher_head.parameters())
    trainable = {id(p) for group in runs.phase2.optimizer.param_groups for p in group["params"]}
    assert not trainable & {id(p) for p in term.teacher_head.parameters()}
    # the student's head is trained with the student
    assert {id(p) for p in term.student_head.parameters()} <= trainable
    assert not same_tensors(term.student_head.state_dict(), runs.student_head_before)


def test_phase2_logs_every_part_of_the_sskd_loss(runs: Runs):
    rows = read_metrics(runs.phase2.out_dir)
    for key in ("train_sskd", "train_sskd/ce", "train_sskd/kd", "train_sskd/tf", "train_sskd/ss", "val_top1",
                "val_sskd_ss_top1"):
        assert key in rows[-1], key
        assert isinstance(rows[-1][key], float)
    row = rows[-1]
    weighted = 0.1 * row["train_sskd/ce"] + 0.9 * row["train_sskd/kd"] + 2.7 * row["train_sskd/tf"] + 10 * row["train_sskd/ss"]
    assert row["train_sskd"] == pytest.approx(weighted, rel=1e-5)
    saved = load_checkpoint_file(runs.phase2.out_dir / "checkpoints" / "last.pt")["method"]
    assert any(k.startswith("terms.sskd.student_head.") for k in saved)


def test_second_run_reuses_the_phase1_head(runs: Runs, tmp_path: Path):
    final = runs.phase1.out_dir / "final.json"
    stamp, metrics = final.stat().st_mtime_ns, (runs.phase1.out_dir / "metrics.jsonl").read_text()
    cfg = sskd_config(runs.teacher, tmp_path / "again", *HEAD)
    (need,) = prerequisites(cfg)
    assert need.produces == final and need.produces.exists()  # satisfied: the trainer skips it
    again = Trainer(cfg)
    assert again.method.terms["sskd"].head_source == runs.phase1.out_dir / "checkpoints" / "last.pt"
    assert final.stat().st_mtime_ns == stamp
    assert (runs.phase1.out_dir / "metrics.jsonl").read_text() == metrics


def test_trainer_runs_phase1_itself_when_missing(runs: Runs, tmp_path: Path):
    cfg = sskd_config(runs.teacher, tmp_path / "auto", "head_epochs: 1")
    (need,) = prerequisites(cfg)
    assert not need.produces.exists()
    trainer = Trainer(cfg)  # building it trains the head first
    assert need.produces.exists()
    assert json.loads(need.produces.read_text())["completed"]
    assert trainer.method.terms["sskd"].head_source == need.produces.parent / "checkpoints" / "last.pt"


def test_explicit_head_checkpoint_skips_phase1(runs: Runs, tmp_path: Path):
    head_file = runs.phase1.out_dir / "checkpoints" / "last.pt"
    cfg = sskd_config(runs.teacher, tmp_path / "explicit", "head_epochs: 2", f"head_checkpoint: {head_file}")
    assert prerequisites(cfg) == []
    heads_before = sorted((runs.teacher / "sskd_head").iterdir())
    trainer = Trainer(cfg)
    assert same_tensors(trainer.method.terms["sskd"].teacher_head.state_dict(), load_head_state(head_file))
    assert sorted((runs.teacher / "sskd_head").iterdir()) == heads_before  # no phase 1 for head_epochs: 2


def test_resume_mid_epoch_is_exact(runs: Runs, tmp_path: Path):
    full = Trainer(sskd_config(runs.teacher, tmp_path / "full", *HEAD)).fit()
    cut = sskd_config(runs.teacher, tmp_path / "cut", *HEAD)
    stopped = dataclasses.replace(cut, trainer=dataclasses.replace(cut.trainer, stop_after_steps=3))
    assert not Trainer(stopped).fit().completed
    assert Trainer(cut).fit(resume="auto").completed
    last = lambda run: load_checkpoint_file(run / "checkpoints" / "last.pt")  # noqa: E731
    a, b = last(full.out_dir), last(tmp_path / "cut")
    assert same_tensors(a["model"], b["model"]) and same_tensors(a["method"], b["method"])
