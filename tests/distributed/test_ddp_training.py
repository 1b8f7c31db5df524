"""2 gloo processes x b train like 1 process x 2b; exact resume under DDP; gather modes.

BatchNorm: with plain BN every rank normalises with its own b samples, so a
2 x b run differs from 1 x 2b by construction. The equivalence runs use
trainer.sync_batchnorm=true (on CPU: kdlab's CrossRankBatchNorm, statistics
over the global batch), which makes the forward pass, the gradients and the
running statistics those of the global batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import _probe_terms
import pytest
import torch
from _helpers import TINY, explain, torchrun

from kdlab.config import load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer
from kdlab.models import create_model

TOLERANCE = 1e-5
KD_TERMS = "distill.terms=[{name: ce, weight: 0.5}, {name: kd, weight: 0.5}]"


def train_in_process(out: Path, *overrides: str) -> Path:
    cfg = load_config(None, [*TINY, f"trainer.out_dir={out}", *overrides])
    result = Trainer(cfg).fit()
    assert result.completed
    return out


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_in_process(tmp_path_factory.mktemp("ddp") / "teacher", "trainer.epochs=1")


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run / "checkpoints" / "last.pt")["model"]


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = model_weights(a), model_weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_exactly(tmp_path: Path, teacher: Path):
    common = ["trainer.epochs=2", "trainer.sync_batchnorm=true", f"teacher.checkpoint={teacher}", KD_TERMS]
    single = train_in_process(tmp_path / "single", *common)
    (tmp_path / "empty.yaml").write_text("{}\n")
    ddp = tmp_path / "ddp"
    argv = ["-m", "kdlab", "train", str(tmp_path / "empty.yaml"), *TINY, *common, f"trainer.out_dir={ddp}"]

    # stopped after 3 of the 4 steps of epoch 0 (a clean stop, exit 0), then resumed to the end
    first = torchrun([*argv, "trainer.stop_after_steps=3"], cwd=tmp_path)
    assert first.returncode == 0, explain(first)
    assert first.stdout.count("stopped by trainer.stop_after_steps=3 at epoch 0 step 3") == 1, explain(first)
    cut = load_checkpoint_file(ddp / "checkpoints" / "last.pt")
    assert (cut["epoch"], cut["step"], cut["world_size"], len(cut["rng_ranks"])) == (0, 3, 2, 2)
    assert not any(key.startswith("module.") for key in cut["model"])  # the unwrapped student
    second = torchrun([*argv, "--resume", "auto"], cwd=tmp_path)
    assert second.returncode == 0, explain(second)

    # rank 0 alone speaks and writes
    for line in ("epoch 1/2", "epoch 2/2", "done:"):
        assert sum(out.startswith(line) for out in second.stdout.splitlines()) == 1, explain(second)
    assert json.loads((ddp / "final.json").read_text())["world_size"] == 2
    assert [r["epoch"] for r in rows(ddp)] == [0, 1]

    difference = max_weight_difference(single, ddp)
    print(f"DDP 2x8 vs 1x16, ce+kd with SyncBN, stopped and resumed: max |weight difference| = {difference:.3g}")
    assert difference < TOLERANCE
    for one, two in zip(rows(single), rows(ddp)):
        for key in ("train_loss", "train_ce", "train_kd", "train_top1", "val_loss"):
            assert one[key] == pytest.approx(two[key], abs=TOLERANCE), key
        assert one["val_top1"] == two["val_top1"] and one["val_top5"] == two["val_top5"]
    # the checkpoint is a plain model file: SyncBN keys equal BatchNorm's
    create_model("resnet8", num_classes=4, checkpoint=ddp / "checkpoints" / "best.pt")


def test_gather_modes_and_label_free_training(tmp_path: Path, teacher: Path):
    from _gather_worker import COMMON, runs

    worker = Path(__file__).with_name("_gather_worker.py")
    result_path = tmp_path / "losses.json"
    proc = torchrun([str(worker), str(tmp_path / "ddp"), str(teacher), str(result_path)], cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    ranks = json.loads(result_path.read_text())["ranks"]
    overrides = runs(str(teacher))

    _probe_terms.RECORDED.clear()
    reference = train_in_process(tmp_path / "ckd", *COMMON[len(TINY):], *overrides["ckd_true"])
    single = list(_probe_terms.RECORDED)
    assert len(single) == 4  # 64 samples / global batch 16

    # gather=true: every rank scores the whole global batch, so its CKD loss (and the training) is 1 x 2b's
    for rank in ranks:
        assert rank["ckd_true"] == pytest.approx(single, abs=TOLERANCE)
    difference = max_weight_difference(reference, tmp_path / "ddp" / "ckd_true")
    print(f"ckd gather=true on 2x8 vs 1x16: max |weight difference| = {difference:.3g}")
    assert difference < TOLERANCE

    # gather=false (the published behaviour): negatives are the 8 local samples only
    local = [rank["ckd_false"] for rank in ranks]
    assert all(len(values) == 4 and all(v == v for v in values) for values in local)
    assert local[0][0] != pytest.approx(single[0], abs=1e-3)
    assert local[0][0] != pytest.approx(local[1][0], abs=1e-6)  # different local batches
    assert (tmp_path / "ddp" / "ckd_false" / "final.json").exists()

    # label-free CoSS: the unused classifier does not stall DDP, kNN evaluation sees every sample
    reference = train_in_process(tmp_path / "coss", *COMMON[len(TINY):], *overrides["coss_true"])
    difference = max_weight_difference(reference, tmp_path / "ddp" / "coss_true")
    print(f"coss gather=true, label-free, on 2x8 vs 1x16: max |weight difference| = {difference:.3g}")
    assert difference < TOLERANCE
    one, two = rows(reference)[-1], rows(tmp_path / "ddp" / "coss_true")[-1]
    knn = next(key for key in one if key.startswith("val_knn"))
    assert one[knn] == two[knn] and one["train_loss"] == pytest.approx(two["train_loss"], abs=TOLERANCE)
