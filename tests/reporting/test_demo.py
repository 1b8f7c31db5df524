"""``kdlab demo`` end to end in a reduced mode (1 seed, 1 epoch, student + kd) and its guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from kdlab.cli.main import main
from kdlab.reporting.demo import DemoError, DemoOptions, plan_runs, prepare_out_dir, run_demo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "runs"
    code = main(["demo", "--quick", "--epochs", "1", "--methods", "student", "kd", "--out", str(out)])
    assert code == 0
    return out


def test_results_json_schema(demo_dir: Path) -> None:
    rows = json.loads((demo_dir / "results.json").read_text())
    assert [row["method"] for row in rows] == ["teacher", "student", "kd"]
    for row in rows:
        assert row["seeds"] == 1 and row["seed_values"] == [0]
        assert 0.0 <= row["top1_mean"] <= 100.0
        assert row["top1_std"] is None  # one seed: no spread to report
        assert row["best_top1_mean"] >= row["top1_mean"]
        assert row["seconds_mean"] > 0 and row["metric"] == "val_top1"
        assert row["command"].startswith("kdlab train ")
    student, kd = rows[1], rows[2]
    assert student["gain"] == 0.0
    assert kd["gain"] == pytest.approx(kd["top1_mean"] - student["top1_mean"])
    assert "teacher.checkpoint=" in kd["command"] and "teacher.checkpoint=" not in student["command"]


def test_report_md_and_figures(demo_dir: Path) -> None:
    report = (demo_dir / "report.md").read_text()
    assert "| teacher | 1 |" in report and "| kd | 1 |" in report
    for needed in ("command: `kdlab demo", "data: `data.name=digits`", "machine:", "date:", "kdlab train"):
        assert needed in report
    for name in ("accuracy.png", "training_curves.png"):
        _assert_png(demo_dir / name)
    assert (demo_dir / "kd" / "seed0" / "final.json").is_file()
    assert (demo_dir / "teacher" / "checkpoints" / "best.pt").is_file()


def test_report_command_rebuilds_the_demo_table(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(demo_dir), "--baseline", "student"]) == 0
    table = capsys.readouterr().out
    rows = {row["method"]: row for row in json.loads((demo_dir / "results.json").read_text())}
    assert f"| kd | 1 | {rows['kd']['top1_mean']:.2f} |" in table
    assert "| teacher | 1 |" in table


def test_reuse_keeps_completed_runs(demo_dir: Path) -> None:
    before = (demo_dir / "kd" / "seed0" / "metrics.jsonl").stat().st_mtime_ns
    options = DemoOptions(out_dir=demo_dir, seeds=1, epochs=1, methods=("student", "kd"), reuse=True)
    lines: list[str] = []
    result = run_demo(options, echo=lines.append)
    assert all(outcome.reused for outcome in result.outcomes)
    assert any("(reused)" in line for line in lines)
    assert (demo_dir / "kd" / "seed0" / "metrics.jsonl").stat().st_mtime_ns == before


def test_plan_is_the_configs_with_overrides(tmp_path: Path) -> None:
    plan = plan_runs(DemoOptions(out_dir=tmp_path, seeds=2, methods=("student", "kd")))
    assert [(run.method, run.seed) for run in plan] == [
        ("teacher", 0), ("student", 0), ("kd", 0), ("student", 1), ("kd", 1)
    ]
    kd = plan[2]
    assert kd.config_path.name == "kd.yaml"
    assert f"trainer.out_dir={tmp_path / 'kd' / 'seed0'}" in kd.overrides
    assert f"teacher.checkpoint={tmp_path / 'teacher'}" in kd.overrides


def test_missing_method_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="no demo config for nosuch"):
        plan_runs(DemoOptions(out_dir=tmp_path, methods=("student", "nosuch")))


def test_foreign_out_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoError, match="not written by kdlab demo"):
        prepare_out_dir(DemoOptions(out_dir=tmp_path))
    assert (tmp_path / "notes.txt").exists()


def test_rerun_starts_clean_but_keeps_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "demo.json").write_text("{}")
    (tmp_path / "kd" / "seed0").mkdir(parents=True)
    (tmp_path / "results.json").write_text("[]")
    (tmp_path / "notes.txt").write_text("mine")
    prepare_out_dir(DemoOptions(out_dir=tmp_path))
    assert not (tmp_path / "kd").exists() and not (tmp_path / "results.json").exists()
    assert (tmp_path / "notes.txt").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (DemoOptions(seeds=0), "--seeds"),
        (DemoOptions(epochs=0), "--epochs"),
        (DemoOptions(methods=()), "--methods is empty"),
        (DemoOptions(methods=("teacher",)), "always trained first"),
        (DemoOptions(methods=("kd", "kd")), "more than once"),
    ],
)
def test_bad_options_are_named(options: DemoOptions, message: str) -> None:
    with pytest.raises(DemoError, match=message):
        options.validate()


def test_cli_reports_bad_options_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_reuse_resumes_an_interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdlab.config import load_config
    from kdlab.engine.trainer import Trainer
    from kdlab.reporting.demo_exec import execute

    options = DemoOptions(out_dir=tmp_path, seeds=1, epochs=1, methods=("student",), teacher=None)
    run = next(r for r in plan_runs(options) if r.method == "student")
    stopped = Trainer(load_config(run.config_path, [*run.overrides, "trainer.stop_after_steps=3"])).fit()
    assert not stopped.completed
    resumed_with = []
    original_fit = Trainer.fit

    def recording_fit(self, resume=None, resume_force=False):  # type: ignore[no-untyped-def]
        resumed_with.append(resume)
        return original_fit(self, resume=resume, resume_force=resume_force)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    outcome = execute(run, reuse=True)
    assert resumed_with == ["auto"]
    assert not outcome.reused and outcome.record.completed
    assert [row["epoch"] for row in outcome.record.metrics] == [0]
