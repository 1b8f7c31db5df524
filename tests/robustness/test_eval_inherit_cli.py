"""``kdlab eval --corruptions / --reference / --transfer / --retrieval / --eval-set / --corruptions-from`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdlab.cli.main import main
from kdlab.engine.trainer import train
from kdlab.reporting import load_run
from kdlab.reporting.aggregate import run_extras

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
TINY = ["trainer.epochs=1", "trainer.progress=none", "data.subset=64", "trainer.device=cpu"]
SYNTHETIC = "synthetic,synthetic_size=16,synthetic_classes=3,synthetic_train=60,synthetic_test=30"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inherit")
    teacher = root / "teacher"
    train(DEMO / "teacher.yaml", [*TINY, f"trainer.out_dir={teacher}"])
    kd = root / "kd"
    train(DEMO / "kd.yaml", [*TINY, f"trainer.out_dir={kd}", f"teacher.checkpoint={teacher / 'checkpoints' / 'best.pt'}"])
    coss = root / "coss"
    train(DEMO / "coss.yaml", [*TINY, f"trainer.out_dir={coss}", f"teacher.checkpoint={teacher / 'checkpoints' / 'best.pt'}"])
    return {"teacher": teacher, "kd": kd, "coss": coss}


def _eval(capsys, run: Path, *flags: str) -> tuple[int, str, str]:
    code = main(["eval", str(run / "config.yaml"), "--checkpoint", str(run / "checkpoints" / "last.pt"), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_corruptions_reference_transfer_and_retrieval_in_one_json(runs, capsys):
    code, out, err = _eval(capsys, runs["kd"], "--corruptions", "gaussian_noise", "contrast", "--severities", "1", "5",
                           "--corruption-samples", "50", "--reference", str(runs["teacher"]), "--transfer", SYNTHETIC,
                           "--retrieval", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["corruptions"]) == {"gaussian_noise", "contrast"}
    assert set(result["corruptions"]["contrast"]) == {"1", "5"}
    cells = [v for by in result["corruptions"].values() for v in by.values()]
    assert result["mean_corruption_top1"] == pytest.approx(sum(cells) / 4)
    assert all(0.0 <= v <= 100.0 and (v * 50 / 100) == pytest.approx(round(v * 50 / 100)) for v in cells)
    assert result["corruption_settings"]["images"] == 50
    assert set(result["mce"]) == {"teacher"} and result["references"]["teacher"]["corruptions"].keys() == \
        result["corruptions"].keys()
    assert 0.0 <= result["transfer"][SYNTHETIC] <= 100.0
    assert result["transfer_details"][SYNTHETIC]["test"] == 30
    assert set(result["retrieval"]) == {"map", "recall@1", "recall@5", "recall@10", "queries"}
    # the same seed gives the same corrupted images, hence the same numbers
    again = json.loads(_eval(capsys, runs["kd"], "--corruptions", "gaussian_noise", "contrast", "--severities", "1",
                             "5", "--corruption-samples", "50", "--json")[1])
    assert again["corruptions"] == result["corruptions"]


def test_text_output_and_kdlab_report_columns(runs, capsys, tmp_path):
    code, out, _ = _eval(capsys, runs["kd"], "--corruptions", "fog", "--severities", "2", "--corruption-samples", "20",
                         "--retrieval")
    assert code == 0 and "corruption fog" in out and "s2 " in out and "retrieval map" in out
    code, out, _ = _eval(capsys, runs["kd"], "--corruptions", "fog", "--severities", "2", "--corruption-samples", "20",
                         "--retrieval", "--json")
    (runs["kd"] / "eval.json").write_text(out)
    extras = run_extras(load_run(runs["kd"]))
    assert {"mean_corruption_top1", "corruption_fog", "retrieval_map", "retrieval_recall@1"} <= set(extras)
    assert main(["report", str(runs["kd"])]) == 0
    report = capsys.readouterr().out
    assert "corruption top-1 %" in report and "retrieval mAP %" in report
    (runs["kd"] / "eval.json").unlink()


def test_a_label_free_run_is_classified_by_its_linear_probe(runs, capsys):
    code, out, err = _eval(capsys, runs["coss"], "--corruptions", "brightness", "--severities", "1",
                           "--corruption-samples", "30", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert "val_top1" not in result and 0.0 <= result["corruptions"]["brightness"]["1"] <= 100.0


def test_released_sets_and_other_test_sets(runs, capsys, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=12)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "fog.npy", rng.integers(0, 256, size=(60, 8, 8, 3), dtype=np.uint8))
    sets = tmp_path / "sketch"
    for i in range(6):
        folder = sets / str(i % 3)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    code, out, err = _eval(capsys, runs["kd"], "--corruptions-from", str(tmp_path), "--severities", "1", "3",
                           "--eval-set", str(sets), "--reference", str(runs["teacher"]), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["corruptions"]) == {"fog"} and set(result["corruptions"]["fog"]) == {"1", "3"}
    assert result["corruption_settings"]["source"] == str(tmp_path)
    assert 0.0 <= result["eval_sets"][str(sets)] <= 100.0
    assert str(sets) in result["references"]["teacher"]["eval_sets"] and "teacher" in result["mce"]


@pytest.mark.parametrize("flags, message", [
    (["--corruptions", "rain"], "unknown corruption 'rain'"),
    (["--corruptions", "fog", "--severities", "6"], "6 is not a severity"),
    (["--corruptions", "fog", "--severities", "five"], "is not a severity"),
    (["--severities", "1"], "go with --corruptions"),
    (["--corruptions", "fog", "--corruption-samples", "0"], "at least 1"),
    (["--reference", "RUN"], "add --corruptions"),
    (["--transfer", "mnist"], "data.name"),
    (["--corruptions-from", "/nonexistent/set"], "no such folder"),
    (["--eval-set", "/nonexistent/set"], "no such folder"),
])
def test_bad_requests_are_one_line_and_exit_2(runs, capsys, flags, message):
    code, out, err = _eval(capsys, runs["kd"], *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
