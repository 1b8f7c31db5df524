"""Short distillation runs: each method lowers its own loss, and a multi-term run through the
real trainer resumes bitwise exactly (memory banks, regressors and warm-ups included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.config import load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer
from method_helpers import TERM_CONFIGS, build, make_batch

#: recipe-like weights, so each term moves the student at a common learning rate
WEIGHTS = {"kd": 1, "dkd": 1, "ckd": 1, "at": 1000, "sp": 3000, "rkd": 1, "pkt": 30000, "fitnet": 10, "crd": 0.8,
           "dist": 2, "nkd": 1, "vid": 1000, "cc": 0.02, "nst": 50, "reviewkd": 1, "ofd": 1e-2}


@pytest.mark.parametrize("name", sorted(TERM_CONFIGS))
def test_a_few_steps_on_one_batch_lower_the_term(name):
    distiller = build([{**TERM_CONFIGS[name][0], "weight": WEIGHTS[name]}])
    distiller.train()
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    batch = make_batch(16)
    values = []
    for _ in range(12):
        out = distiller(batch, epoch=0, progress=0.0)
        values.append(float(out.terms[name]))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert sum(values[-3:]) / 3 < 0.95 * values[0], values


TINY = [
    "data.name=synthetic",
    "data.synthetic_train=48",
    "data.synthetic_test=16",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.progress=none",
    "trainer.device=cpu",
    "schedule.name=cosine",
]

TERMS = (
    "distill.terms=[{name: ce}, {name: kd, weight: 0.5}, {name: dkd, weight: 0.5, warmup: 2},"
    " {name: at, weight: 100}, {name: fitnet, weight: 1, regressor: always},"
    " {name: crd, weight: 0.8, nce_k: 32, feat_dim: 16}]"
)


def _run(out: Path, *extra: str, resume: str | None = None):
    cfg = load_config(None, [*TINY, f"trainer.out_dir={out}", *extra])
    return Trainer(cfg).fit(resume=resume)


@pytest.mark.slow
def test_trainer_distills_with_several_terms_and_resumes_exactly(tmp_path: Path):
    teacher = _run(tmp_path / "teacher", "model.name=wrn_16_1", "trainer.epochs=1").out_dir
    student = ["model.name=resnet8", f"teacher.checkpoint={teacher}", "trainer.epochs=2", TERMS]

    full = _run(tmp_path / "full", *student)
    assert full.completed
    rows = [json.loads(line) for line in (full.out_dir / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_ce", "train_kd", "train_dkd", "train_at", "train_fitnet", "train_crd", "val_top1"):
        assert key in rows[0], key

    # 48 samples / batch 16 = 3 steps per epoch: stop inside epoch 1, then resume
    cut = _run(tmp_path / "cut", *student, "trainer.stop_after_steps=4")
    assert not cut.completed
    resumed = _run(tmp_path / "cut", *student, resume="auto")
    assert resumed.completed

    a = load_checkpoint_file(full.out_dir / "checkpoints" / "last.pt")
    b = load_checkpoint_file(resumed.out_dir / "checkpoints" / "last.pt")
    for part in ("model", "method"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    assert {"terms.crd.student_bank", "terms.crd.teacher_bank", "terms.crd.normalizer"} <= set(a["method"])
    assert any(k.startswith("terms.fitnet.regressor") for k in a["method"])
