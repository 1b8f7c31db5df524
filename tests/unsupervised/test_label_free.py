"""Label-free mode through the real trainer: labels never matter, heads are checkpointed, terms compose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer

STEPS = 3


def _train(cfg, garbage_labels: bool) -> dict[str, torch.Tensor]:
    trainer = Trainer(cfg)
    if garbage_labels:
        clean_epoch = trainer.data.train.epoch

        def epoch(epoch: int, start_step: int = 0):
            # out-of-range, negative, different every batch: any read of them would crash or change the run
            generator = torch.Generator().manual_seed(1234 + epoch)
            for batch in clean_epoch(epoch, start_step):
                garbage = torch.randint(-1000, 1000, batch["target"].shape, generator=generator)
                yield {**batch, "target": garbage.to(batch["target"].device)}

        trainer.data.train.epoch = epoch  # type: ignore[method-assign]
    result = trainer.fit()
    assert not result.completed  # stopped by stop_after_steps
    return {k: v.clone() for k, v in trainer.method.state_dict().items()}


@pytest.mark.parametrize("term", ["coss", "seed"])
def test_label_free_training_is_bitwise_independent_of_the_labels(tmp_path: Path, digits_cfg, coss_overrides,
                                                                  wide_teacher, term):
    terms = "[{name: coss}]" if term == "coss" else "[{name: seed, queue_size: 256}]"
    common = [*wide_teacher, *coss_overrides, f"distill.terms={terms}", f"trainer.stop_after_steps={STEPS}"]
    clean = _train(digits_cfg(*common, f"trainer.out_dir={tmp_path / 'clean'}"), garbage_labels=False)
    garbage = _train(digits_cfg(*common, f"trainer.out_dir={tmp_path / 'garbage'}"), garbage_labels=True)
    assert clean.keys() == garbage.keys()
    assert any(key.startswith(f"terms.{term}.head.") for key in clean)  # the 64 -> 128 head is part of the method
    for key in clean:
        assert torch.equal(clean[key], garbage[key]), key


def test_head_and_queue_are_saved_in_the_checkpoint_method_entry(tmp_path: Path, digits_cfg, coss_overrides,
                                                                 wide_teacher):
    out = tmp_path / "run"
    cfg = digits_cfg(
        *wide_teacher, *coss_overrides, "distill.terms=[{name: coss}, {name: seed, queue_size: 128, weight: 0.5}]",
        "trainer.stop_after_steps=1", f"trainer.out_dir={out}",
    )
    Trainer(cfg).fit()
    state = load_checkpoint_file(out / "checkpoints" / "last.pt")
    method = state["method"]
    assert method["terms.coss.head.0.weight"].shape == (32, 64)  # distill.head_hidden=32, resnet8 is 64-d
    assert method["terms.coss.head.2.weight"].shape == (128, 32)  # wrn_16_2 is 128-d
    assert method["terms.seed.queue"].shape == (128, 128) and int(method["terms.seed.queue_ptr"]) == 64
    assert not any(key.startswith("student.") for key in method)
    assert "fc.weight" in state["model"]  # the model entry is the plain backbone (+ its unused classifier)


def test_label_free_epochs_report_weighted_knn(tmp_path: Path, digits_cfg, coss_overrides, random_teacher):
    out = tmp_path / "run"
    cfg = digits_cfg(*random_teacher, *coss_overrides, "data.subset=256", "trainer.epochs=1", f"trainer.out_dir={out}")
    assert Trainer(cfg).fit().completed
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "val_knn10" in row and 0.0 <= row["val_knn10"] <= 100.0
    assert "train_coss" in row and "train_coss/space" in row and "train_top1" not in row


def test_coss_composes_with_ce_and_kd_when_labels_are_used(tmp_path: Path, digits_cfg, random_teacher):
    out = tmp_path / "run"
    cfg = digits_cfg(
        *random_teacher, "distill.labels=true", "distill.head_hidden=16", "trainer.stop_after_steps=2",
        "distill.terms=[{name: ce, weight: 1.0}, {name: kd, weight: 0.9}, {name: coss, weight: 1.0}]",
        f"trainer.out_dir={out}",
    )
    trainer = Trainer(cfg)
    assert set(trainer.method.terms) == {"ce", "kd", "coss"}
    out = trainer.method(next(iter(trainer.data.train.epoch(0))))
    assert {"ce", "kd", "coss", "coss/sample", "coss/space"} <= set(out.terms)
    assert all(bool(torch.isfinite(v)) for v in out.terms.values())
    expected = out.terms["ce"] + 0.9 * out.terms["kd"] + out.terms["coss"]
    assert torch.allclose(out.loss, expected)
    assert trainer.fit().exit_code == 0


@pytest.mark.parametrize("terms", ["[{name: pkt}]", "[{name: rkd}]", "[{name: cosine}]", "[{name: mse_embed}]",
                                   "[{name: ckd_embed, temperature: 0.1}]"])
def test_embedding_baselines_train_label_free_across_widths(tmp_path: Path, digits_cfg, coss_overrides,
                                                            wide_teacher, terms):
    """64-d resnet8 student, 128-d wrn_16_2 teacher, no labels: every baseline must build and step."""
    cfg = digits_cfg(
        *wide_teacher, *coss_overrides, f"distill.terms={terms}", "trainer.stop_after_steps=1",
        f"trainer.out_dir={tmp_path / 'run'}",
    )
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    trainer.fit()
    changed = [k for k, v in trainer.student.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"{terms}: the student did not change"
