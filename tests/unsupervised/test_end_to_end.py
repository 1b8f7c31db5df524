"""CoSS end to end on the digits (CPU): a trained teacher's embedding transfers without labels; `kdlab eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.cli.main import main
from kdlab.engine.evaluate import embed
from kdlab.engine.trainer import Trainer, read_metrics
from kdlab.eval import knn_accuracy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def knn20(trainer: Trainer) -> float:
    train_x, train_y, _ = embed(trainer.student, trainer.data.train_eval)
    test_x, test_y, _ = embed(trainer.student, trainer.data.eval)
    return knn_accuracy(train_x, train_y, test_x, test_y, ks=(20,), num_classes=10)[20]


@pytest.fixture(scope="module")
def coss_run(tmp_path_factory: pytest.TempPathFactory, trained_teacher) -> tuple[Path, list[str], float]:
    """A label-free CoSS student of the trained teacher; returns (run folder, overrides, untrained kNN-20)."""
    from kdlab.config import load_config

    out = tmp_path_factory.mktemp("coss") / "run"
    # all training images (the demo config trains students on a 300-image subset)
    overrides = [*trained_teacher, "data.subset=null", "trainer.device=cpu", "trainer.progress=none", "eval.knn_k=[20]",
                 "eval.probe_epochs=30"]
    cfg = load_config(CONFIGS / "demo" / "coss.yaml", [*overrides, "trainer.epochs=3", f"trainer.out_dir={out}"])
    trainer = Trainer(cfg)
    untrained = knn20(trainer)
    assert trainer.fit().completed
    return out, overrides, untrained


def test_coss_student_beats_the_untrained_student_without_labels(coss_run):
    out, _, untrained = coss_run
    final = read_metrics(out)[-1]
    # random conv features already give ~85-90% kNN on the digits; the distilled embedding is clearly better
    assert final["val_knn20"] >= untrained + 4.0, (final["val_knn20"], untrained)
    assert final["val_knn20"] > 91.0


def test_eval_reports_knn_linear_probe_and_manifold_with_a_plot(coss_run, tmp_path: Path, capsys):
    out, overrides, _ = coss_run
    plot = tmp_path / "manifold.png"
    code = main([
        "eval", str(CONFIGS / "demo" / "coss.yaml"), *overrides, "--checkpoint", str(out / "checkpoints" / "best.pt"),
        "--knn", "--linear-probe", "--manifold", "--plot", str(plot), "--json",
    ])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "val_top1" not in result  # label-free: the classifier was never trained
    assert result["knn20"] > 91.0 and result["linear_top1"] > 85.0
    assert 0.5 < result["manifold_cka"] <= 1.0 + 1e-9 and 0.0 <= result["manifold_knn_overlap"] <= 1.0
    assert result["manifold_sample_cosine"] > 0.5  # same width (64): the student matches the teacher's space
    assert not any(key.startswith("coss_head") for key in result)  # equal widths: no head to report
    assert result["manifold_plot"] == str(plot) and plot.stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_also_reports_the_projection_head_output(tmp_path: Path, digits_cfg, coss_overrides, wide_teacher):
    """resnet8 (64-d) distilled from wrn_16_2 (128-d): the coss head's output is measured too."""
    from kdlab.engine.report_eval import evaluate_checkpoint

    out = tmp_path / "run"
    cfg = digits_cfg(*wide_teacher, *coss_overrides, "data.subset=200", "trainer.stop_after_steps=1",
                     f"trainer.out_dir={out}")
    Trainer(cfg).fit()
    result = evaluate_checkpoint(cfg, str(out / "checkpoints" / "last.pt"), knn=True, manifold=True)
    assert {"knn10", "coss_head_knn10", "manifold_cka", "coss_head_manifold_cka"} <= set(result)
    assert result["manifold_sample_cosine"] is None  # 64 vs 128 dims: no shared space
    assert isinstance(result["coss_head_manifold_sample_cosine"], float)  # the head maps into the teacher's space
    assert "manifold_plot" not in result  # no plot path given


def test_eval_of_a_plain_model_file_skips_the_heads(tmp_path: Path, digits_cfg, coss_overrides, wide_teacher):
    from kdlab.engine.report_eval import evaluate_checkpoint
    from kdlab.models import create_model

    path = tmp_path / "plain.pt"
    torch.save(create_model("resnet8", num_classes=10, in_chans=1).state_dict(), path)
    cfg = digits_cfg(*wide_teacher, *coss_overrides, "data.subset=100")
    result = evaluate_checkpoint(cfg, str(path))
    assert "knn10" in result and not any(key.startswith("coss_head") for key in result)
