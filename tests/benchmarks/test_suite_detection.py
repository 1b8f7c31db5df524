"""The shipped detection CPU suite: manifest, plan (dataset step, teacher from a backbone), and its miniature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, build_tasks, plan_suite, run_suite
from kdlab.benchmarks.suite_manifest import SuiteError, load_manifest

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "benchmarks" / "detection_cpu"
METHODS = ["det", "roi_kd", "roi_ckd", "reviewkd", "reviewkd+roi_ckd"]


def test_manifest_lists_the_detection_methods_with_det_as_baseline() -> None:
    manifest = load_manifest(SUITE)
    assert list(manifest.method_names) == METHODS and manifest.baseline == "det"
    assert manifest.seeds == 3 and manifest.dataset is not None
    assert manifest.dataset.source.endswith("cifar10-jpg.zip")
    assert manifest.teacher.finetune and not manifest.teacher.evaluate_pretrained


def test_plan_makes_the_data_first_and_starts_the_teacher_from_the_backbone(shared_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the configs' paths are relative to the repository root
    plan = plan_suite(SuiteOptions(suite_dir=SUITE, out_dir=tmp_path / "out"))
    assert len(plan.runs) == 5 * 3
    data_root = f"data.root={tmp_path / 'out' / 'data'}"
    assert all(data_root in run.overrides for run in plan.runs)
    assert plan.pretrained.name == "resnet56-4bfd9763.th"
    assert any(o.startswith("model.kwargs.backbone_checkpoint=") for o in plan.teacher_overrides)
    keys = [task.key for task in build_tasks(plan)]
    assert keys[0] == "teacher" and "pretrained" not in keys
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_option_is_named(tmp_path) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    for name in ("teacher.yaml", "det.yaml"):
        (folder / name).write_text("task: detection\n")
    (folder / "suite.yaml").write_text(
        "name: x\nteacher: {config: teacher.yaml}\nmethods: [{name: det, config: det.yaml}]\n"
        "dataset: {make_detection: {source: digits, colour: red}}\n"
    )
    with pytest.raises(SuiteError, match=r"dataset.make_detection: unknown key\(s\) \['colour'\]"):
        load_manifest(folder)


def test_miniature_runs_end_to_end_on_the_real_zip(shared_dir, tmp_path, monkeypatch) -> None:
    """`kdlab bench suite benchmarks/detection_cpu --mini`: 24 canvases, teacher, det and roi_ckd, 1 epoch."""
    monkeypatch.chdir(REPO)
    result = run_suite(SuiteOptions(suite_dir=SUITE, mini=True, out_dir=tmp_path / "out"), echo=lambda line: None)
    assert result.exit_code == 0, result.failures
    rows = {row["method"]: row for row in result.rows}
    assert set(rows) == {"teacher", "det", "roi_ckd"}
    for row in rows.values():
        assert row["metric"] == "val_map" and 0.0 <= row["map_mean"] <= 100.0
        assert {"map_mean", "map_std", "map50_mean", "map50_std", "seeds"} <= set(row)
    made = json.loads((tmp_path / "out" / "data" / "make_detection.json").read_text())
    assert made["train_canvases"] == 24 and made["test_canvases"] == 12
    assert "## Results" in (tmp_path / "out" / "report.md").read_text()
