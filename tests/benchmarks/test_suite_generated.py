"""The benchmark suite end to end on a generated tiny ImageFolder zip and a tiny option-A teacher (no ../shared)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, dry_run, plan_suite, run_suite
from kdlab.benchmarks.suite_manifest import SuiteError
from kdlab.cli.main import main
from kdlab.reporting import collect_groups

from suite_fixtures import make_tiny_suite


def _options(suite: Path, tmp: Path, **changes) -> SuiteOptions:
    return SuiteOptions(suite_dir=suite, out_dir=tmp / "out", **changes)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The whole tiny suite, once for the module: teacher evaluation + fine-tune, 4 methods x 2 seeds."""
    root = tmp_path_factory.mktemp("suite")
    suite = make_tiny_suite(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        lines: list[str] = []
        result = run_suite(_options(suite, root), echo=lines.append)
    return result, root


def test_whole_suite_gives_one_row_per_method_with_the_shared_schema(finished):
    result, _ = finished
    assert result.exit_code == 0 and not result.failures
    rows = {row["method"]: row for row in result.rows}
    assert list(rows) == ["teacher", "student", "kd", "coss", "at"]
    for name in ("student", "kd", "coss", "at"):
        row = rows[name]
        assert row["seeds"] == 2 and row["seed_values"] == [0, 1]
        assert 0.0 <= row["top1_mean"] <= 100.0 and row["top1_std"] is not None
        assert row["wall_seconds_mean"] > 0 and row["gain"] is not None
    assert rows["coss"]["metric"] == "linear_top1"  # label-free: scored by the linear probe
    saved = json.loads((result.plan.out_dir / "results.json").read_text())
    assert [row["method"] for row in saved] == list(rows)
    assert all({"method", "top1_mean", "top1_std", "seeds"} <= set(row) for row in saved)


def test_teacher_row_reports_accuracy_before_and_after_the_fine_tune(finished):
    result, _ = finished
    teacher = result.rows[0]
    assert teacher["method"] == "teacher" and teacher["epochs"] == 1
    assert teacher["pretrained_top1"] is not None and teacher["top1_mean"] is not None
    assert teacher["checkpoint"].endswith(os.path.join("teacher", "checkpoints", "last.pt"))


def test_cached_methods_of_a_seed_share_one_cache_and_live_ones_use_none(finished):
    result, _ = finished
    runs = result.plan.out_dir / "runs"
    for seed in (0, 1):
        targets = {os.readlink(runs / m / f"seed{seed}" / "teacher_cache") for m in ("kd", "coss")}
        assert targets == {str(result.plan.out_dir / "teacher_cache" / f"seed{seed}")}
        assert not (runs / "at" / f"seed{seed}" / "teacher_cache").exists()


def test_kdlab_report_groups_the_seeds_of_each_method(finished):
    result, _ = finished
    groups = {g.label: len(g.runs) for g in collect_groups([result.plan.out_dir / "runs"])}
    assert groups == {"student": 2, "kd": 2, "coss": 2, "at": 2}


def test_report_has_the_command_protocol_and_the_comparisons(finished):
    result, _ = finished
    text = (result.plan.out_dir / "report.md").read_text()
    for heading in ("## Command", "## Protocol as configured", "## About the suite", "## Results", "## Teacher", "## Does the suite separate the methods?",
                    "## Ordering against the published", "## Cost", "## Machine"):
        assert heading in text
    assert "### Why" in text  # the suite's README, headings one level down
    assert "| student < kd |" in text and "not yet run" not in text


def test_running_again_keeps_every_completed_run(finished, monkeypatch):
    result, root = finished
    monkeypatch.chdir(root)
    final = result.plan.out_dir / "runs" / "kd" / "seed1" / "final.json"
    before = final.stat().st_mtime_ns
    again = run_suite(_options(root / "suite", root), echo=lambda line: None)
    assert again.exit_code == 0
    assert all(outcome.reused for outcome in again.outcomes)
    assert final.stat().st_mtime_ns == before
    assert [r["top1_mean"] for r in again.rows] == [r["top1_mean"] for r in result.rows]


def test_a_failing_method_is_recorded_and_the_others_still_run(tiny_suite, tmp_path):
    # the weights do not fit a resnet14: the cache of seed 0 (built with kd's config) fails, kd with it
    (tiny_suite / "kd.yaml").write_text(
        "_base_: _teacher_.yaml\nteacher: {name: resnet14}\n"
        "distill: {terms: [{name: ce, weight: 0.1}, {name: kd, weight: 0.9}]}\n"
    )
    result = run_suite(_options(tiny_suite, tmp_path, seeds=1, methods=("student", "kd", "at")), echo=lambda line: None)
    assert result.exit_code == 1
    assert [row["method"] for row in result.rows] == ["teacher", "student", "at"]
    failed = {f["task"]: f["error"] for f in result.failures}
    assert set(failed) == {"cache:0", "run:kd:0"} and "did not succeed" in failed["run:kd:0"]
    assert "kd seed 0" in (result.plan.out_dir / "report.md").read_text()


def test_an_interrupted_run_stops_the_suite_and_the_same_command_resumes_it(tiny_suite, tmp_path):
    stopped = run_suite(
        _options(tiny_suite, tmp_path, mini=True, methods=("student",), overrides=("trainer.stop_after_steps=1",)),
        echo=lambda line: None,
    )
    assert stopped.exit_code == 3 and stopped.rows == []
    resumed = run_suite(_options(tiny_suite, tmp_path, mini=True, methods=("student",)), echo=lambda line: None)
    assert resumed.exit_code == 0 and [row["method"] for row in resumed.rows] == ["student"]
    metrics = (resumed.plan.out_dir / "runs" / "student" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1  # one epoch, logged once: resumed, not restarted on top of the old log


def test_mini_runs_the_manifest_miniature(tiny_suite, tmp_path):
    result = run_suite(_options(tiny_suite, tmp_path, mini=True), echo=lambda line: None)
    assert result.exit_code == 0
    assert [row["method"] for row in result.rows] == ["student", "kd"]  # mini: no teacher fine-tune, no eval
    assert result.plan.seeds == 1 and result.rows[0]["epochs"] == 1
    # without a fine-tune the students read the pretrained weights through a link in the suite's folder,
    # so nothing is ever written beside the (shared, read-only) weights
    link = result.plan.out_dir / "teacher" / "pretrained.th"
    assert link.is_symlink() and Path(os.readlink(link)) == (tmp_path / "weights" / "teacher.th").resolve()


def test_missing_dataset_zip_fails_naming_the_key_and_the_path(tiny_suite, tmp_path):
    (tmp_path / "data" / "tiny.zip").unlink()
    with pytest.raises(SuiteError, match=r"data\.root=data/tiny\.zip .*does not exist"):
        plan_suite(_options(tiny_suite, tmp_path))


def test_missing_teacher_weights_fail_naming_the_file(tiny_suite, tmp_path):
    with pytest.raises(SuiteError, match=r"--teacher-checkpoint=.*nope\.th"):
        plan_suite(_options(tiny_suite, tmp_path, teacher_checkpoint=tmp_path / "nope.th"))


def test_unknown_method_lists_the_valid_ones(tiny_suite, tmp_path):
    with pytest.raises(SuiteError, match=r"--methods: foo not in .*choose from student, kd, coss, at"):
        plan_suite(_options(tiny_suite, tmp_path, methods=("foo",)))


def test_a_bad_term_parameter_fails_before_anything_trains(tiny_suite, tmp_path):
    (tiny_suite / "kd.yaml").write_text("_base_: _teacher_.yaml\ndistill: {terms: [{name: kd, temprature: 4}]}\n")
    with pytest.raises(SuiteError, match=r"method kd .*temprature"):
        plan_suite(_options(tiny_suite, tmp_path))
    assert not (tmp_path / "out").exists()


def test_refuses_an_output_folder_it_did_not_write(tiny_suite, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(SuiteError, match="not written by kdlab bench suite"):
        run_suite(_options(tiny_suite, tmp_path), echo=lambda line: None)
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_dry_run_writes_the_protocol_document_without_results(tiny_suite, tmp_path):
    doc = tmp_path / "bench.md"
    lines: list[str] = []
    dry_run(_options(tiny_suite, tmp_path, doc=doc), echo=lines.append)
    text = doc.read_text()
    assert "## Results: not yet run on this machine" in text and "## Protocol" in text
    assert "| kd |" in text and "cache" in text
    assert any("run:kd:1" in line and "cache:1" in line for line in lines)  # dependencies shown
    assert not (tmp_path / "out").exists()


def test_cli_dry_run_and_bad_suite_folder(tiny_suite, tmp_path, capsys):
    assert main(["bench", "suite", str(tiny_suite), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "run:student:0" in capsys.readouterr().out
    assert main(["bench", "suite", str(tmp_path / "nowhere")]) == 2
    assert "suite folder" in capsys.readouterr().err


def test_two_worker_processes_give_the_same_numbers_as_one(tiny_suite, tmp_path):
    """jobs=2 runs each task in a spawned worker; CPU training is deterministic, so the rows match exactly."""
    one = run_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "one", mini=True, jobs=1), echo=lambda line: None)
    two = run_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "two", mini=True, jobs=2), echo=lambda line: None)
    assert one.exit_code == two.exit_code == 0
    assert [(r["method"], r["top1_mean"]) for r in one.rows] == [(r["method"], r["top1_mean"]) for r in two.rows]


def test_a_run_recorded_before_a_new_config_key_existed_is_still_reused(finished, monkeypatch):
    """A key added to the schema later (recorded config lacks it, the plan has its default) changes nothing."""
    import yaml

    result, root = finished
    monkeypatch.chdir(root)
    config_file = result.plan.out_dir / "runs" / "student" / "seed0" / "config.yaml"
    recorded = yaml.safe_load(config_file.read_text())
    del recorded["distill"]["teacher_cache_dtype"]  # as written by a kdlab that did not know the key
    config_file.write_text(yaml.safe_dump(recorded))
    again = run_suite(_options(root / "suite", root, methods=("student",)), echo=lambda line: None)
    assert [o.reused for o in again.outcomes] == [True, True]


def test_report_only_reports_the_finished_runs_and_lists_the_rest_without_training(tiny_suite, tmp_path, capsys):
    first = run_suite(_options(tiny_suite, tmp_path, mini=True), echo=lambda line: None)
    assert first.exit_code == 0
    lines: list[str] = []
    report = run_suite(_options(tiny_suite, tmp_path, mini=True, seeds=2, report_only=True,
                                doc=tmp_path / "doc.md"), echo=lines.append)
    assert report.report_only and report.exit_code == 1
    assert [(r["method"], r["seeds"], r["top1_mean"]) for r in report.rows] == [
        (r["method"], r["seeds"], r["top1_mean"]) for r in first.rows]
    assert all(outcome.reused for outcome in report.outcomes)
    missing = {f["task"]: f["error"] for f in report.failures}
    assert set(missing) == {"run:student:1", "run:kd:1"}  # shared work (the seed's cache) is not checked
    assert all(reason.startswith("NotFinished: not run yet") for reason in missing.values())
    assert not (report.plan.out_dir / "runs" / "student" / "seed1").exists()  # nothing trained
    document = (tmp_path / "doc.md").read_text()
    assert "written by `--report-only`" in document and "student seed 1" in document
    # the CLI refuses --report-only with options that would change or skip the runs
    code = main(["bench", "suite", str(tiny_suite), "--report-only", "--fresh", "--out", str(tmp_path / "out")])
    assert code == 2 and "cannot be combined with --fresh" in capsys.readouterr().err
