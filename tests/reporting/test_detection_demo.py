"""``kdlab demo --task detection`` end to end in its --quick mode (48 canvases, 1 epoch) and its guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("pycocotools")

from kdlab.cli.main import build_parser, main  # noqa: E402
from kdlab.reporting.demo import DEFAULT_METHODS  # noqa: E402
from kdlab.reporting.detection_demo import (  # noqa: E402
    FULL_DATA,
    QUICK_DATA,
    DemoError,
    DetectionDemoOptions,
    plan_detection_runs,
    prepare_data,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW_KEYS = {"method", "seeds", "seed_values", "metric", "map_mean", "map_std", "map50_mean", "map50_std",
            "map75_mean", "map_gain", "seconds_mean", "wall_seconds_mean", "command", "runs"}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detection-demo") / "runs"
    assert main(["demo", "--task", "detection", "--quick", "--out", str(out)]) == 0
    return out


def test_results_json_rows(demo_dir: Path) -> None:
    rows = json.loads((demo_dir / "results.json").read_text())
    assert [row["method"] for row in rows] == ["teacher", "student", "roi_ckd"]
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["seeds"] == 1 and row["seed_values"] == [0] and row["metric"] == "val_map"
        assert 0.0 <= row["map_mean"] <= 100.0 and 0.0 <= row["map50_mean"] <= 100.0  # AP points
        assert row["map_std"] is None and row["map50_std"] is None  # one seed: no spread
        assert row["epochs"] == 1 and row["seconds_mean"] > 0
        assert row["command"].startswith("kdlab train configs/demo/detection/")
        assert f"data.root={demo_dir / 'data'}" in row["command"]
    student, roi_ckd = rows[1], rows[2]
    assert roi_ckd["map_gain"] == pytest.approx(roi_ckd["map_mean"] - student["map_mean"])
    assert f"teacher.checkpoint={demo_dir / 'teacher'}" in roi_ckd["command"]
    assert "teacher.checkpoint=" not in student["command"]
    final = json.loads((demo_dir / "roi_ckd" / "seed0" / "final.json").read_text())
    assert roi_ckd["map_mean"] == pytest.approx(100.0 * final["final"]["val_map"])


def test_report_png_and_data(demo_dir: Path) -> None:
    report = (demo_dir / "report.md").read_text()
    assert "| method | n | AP | AP50 | AP75 | AP gain vs student | time/run |" in report
    assert "| roi_ckd | 1 |" in report and "(baseline)" in report
    command = next(line for line in report.splitlines() if line.startswith("- command: "))
    assert command.startswith("- command: `kdlab demo --task detection") and "--quick" in command
    for needed in ("kdlab data make-detection digits",
                   "machine:", "![detections](detections.png)"):
        assert needed in report
    png = demo_dir / "detections.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        width, height = image.size
        assert width > 400 and height > 400 and width < height  # 4 columns, one row per canvas
    made = json.loads((demo_dir / "data" / "make_detection.json").read_text())
    assert made["source"] == "digits" and made["train_canvases"] == QUICK_DATA.train
    marker = json.loads((demo_dir / "demo.json").read_text())
    assert marker["task"] == "detection" and marker["finished"] is True


def test_rerun_reuses_data_and_runs(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (demo_dir / "teacher" / "metrics.jsonl").stat().st_mtime_ns
    assert main(["demo", "--task", "detection", "--quick", "--reuse", "--out", str(demo_dir)]) == 0
    printed = capsys.readouterr().out
    assert "reused 48 train / 16 test canvases" in printed
    assert printed.count("(reused)") == 3 and "AP gain vs student" in printed
    assert (demo_dir / "teacher" / "metrics.jsonl").stat().st_mtime_ns == before


def test_data_is_remade_when_the_options_differ(tmp_path: Path) -> None:
    tiny = QUICK_DATA.__class__(**{**QUICK_DATA.__dict__, "train": 3, "test": 2})
    folder, summary, reused = prepare_data(tmp_path, tiny)
    assert not reused and summary["train_canvases"] == 3
    assert prepare_data(tmp_path, tiny)[2] is True
    other = tiny.__class__(**{**tiny.__dict__, "seed": 1})
    _, summary, reused = prepare_data(tmp_path, other)
    assert not reused and summary["options"]["seed"] == 1
    assert len(list((folder / "train2017").glob("*.png"))) == 3


def test_plan_reads_the_demo_data(tmp_path: Path) -> None:
    plan = plan_detection_runs(DetectionDemoOptions(out_dir=tmp_path, seeds=2))
    assert [(run.method, run.seed) for run in plan] == [
        ("teacher", 0), ("student", 0), ("roi_ckd", 0), ("student", 1), ("roi_ckd", 1)
    ]
    assert all(f"data.root={tmp_path / 'data'}" in run.overrides for run in plan)
    assert all(run.config_path.parent.name == "detection" for run in plan)


def test_full_demo_canvases_are_the_measured_ones() -> None:
    assert (FULL_DATA.canvas, FULL_DATA.max_objects, FULL_DATA.min_size, FULL_DATA.max_size) == (48, 3, 12, 28)


def test_classification_parser_defaults_unchanged() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.task == "classification"
    assert args.out == "runs/demo" and args.seeds is None and args.epochs is None
    assert args.methods == list(DEFAULT_METHODS) and not args.quick and not args.reuse


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--methods", "kd", "ckd"], "--methods kd ckd: not detection demo methods"),
        (["--no-embedding-plot"], "--no-embedding-plot is a classification option"),
        (["--seeds", "0"], "--seeds must be a positive integer"),
        (["--methods", "roi_ckd"], "must include 'student'"),
    ],
)
def test_flags_that_make_no_sense_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                         message: str) -> None:
    assert main(["demo", "--task", "detection", "--out", str(tmp_path / "x"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_foreign_out_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    from kdlab.reporting.detection_demo import run_detection_demo

    with pytest.raises(DemoError, match="not written by kdlab demo"):
        run_detection_demo(DetectionDemoOptions(out_dir=tmp_path, data=QUICK_DATA), echo=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
