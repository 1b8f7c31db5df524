"""A suite with pairs end to end on CIFAR-100-shaped synthetic data: schedule, shared runs, reuse, published columns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, build_tasks, dry_run, plan_suite, run_suite
from kdlab.benchmarks.suite_manifest import SuiteError
from kdlab.cli.main import main
from kdlab.reporting import collect_groups

from pair_fixtures import PAIRS, make_pair_suite

A, B = PAIRS


def _options(suite: Path, root: Path, **changes) -> SuiteOptions:
    return SuiteOptions(suite_dir=suite, out_dir=root / "out", **changes)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The whole pair suite once: 2 teacher evaluations, 6 runs x 2 seeds, 1 epoch each."""
    root = tmp_path_factory.mktemp("pairs")
    suite = make_pair_suite(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = run_suite(_options(suite, root), echo=lambda line: None)
    return result, root


def _rows(result) -> dict[tuple[str, str], dict]:
    return {(row["pair"], row["method"]): row for row in result.rows}


@pytest.fixture
def pair_suite(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return make_pair_suite(tmp_path)


# ---------------------------------------------------------------------------------------------- plan
def test_plan_shares_the_student_and_leaves_the_missing_recipe_absent(pair_suite, tmp_path):
    plan = plan_suite(_options(pair_suite, tmp_path))
    assert [(a.method, a.pair) for a in plan.absent] == [("at", B)]
    seed0 = {(r.method, r.instance): r.pairs for r in plan.runs if r.seed == 0}
    assert seed0 == {("student", "resnet8"): (A, B), ("kd", A): (A,), ("at", A): (A,), ("kd-slow", A): (A,),
                     ("kd", B): (B,), ("kd-slow", B): (B,)}
    assert len(plan.runs) == 6 * 2
    assert [(t.label, t.pairs) for t in plan.teachers] == [("resnet14", [A]), ("resnet20", [B])]
    keys = [task.key for task in build_tasks(plan)]
    assert keys[:2] == ["pretrained:resnet14", "pretrained:resnet20"]
    assert keys.index("run:student:resnet8:0") < keys.index(f"run:kd:{B}:0") < keys.index("run:student:resnet8:1")
    assert not (tmp_path / "out").exists()


def test_method_overrides_sit_between_the_suite_and_the_command_line(pair_suite, tmp_path):
    plan = plan_suite(_options(pair_suite, tmp_path, overrides=("optim.lr=0.2",)))
    slow = next(r for r in plan.runs if r.method == "kd-slow" and r.instance == A and r.seed == 0)
    assert slow.overrides.index("optim.lr=0.01") < slow.overrides.index("optim.lr=0.2")
    assert f"description=slow kd {A}" in slow.overrides  # placeholders are filled in overrides too
    assert slow.load().optim.lr == 0.2  # the command line wins


def test_pairs_option_selects_and_names_unknown_ones(pair_suite, tmp_path):
    plan = plan_suite(_options(pair_suite, tmp_path, pairs=(B,)))
    assert {r.instance for r in plan.runs} == {"resnet8", B} and [t.label for t in plan.teachers] == ["resnet20"]
    with pytest.raises(SuiteError, match=rf"--pairs: nope not in .*choose from {A}, {B}"):
        plan_suite(_options(pair_suite, tmp_path, pairs=("nope",)))


def test_mini_runs_its_pairs_only(pair_suite, tmp_path):
    plan = plan_suite(_options(pair_suite, tmp_path, mini=True))
    assert [p.name for p in plan.pairs] == [B] and {r.method for r in plan.runs} == {"student", "kd"}


def test_a_recipe_for_another_student_is_invalid(pair_suite, tmp_path):
    (pair_suite / "kd" / f"{B}.yaml").write_text((pair_suite / "kd" / f"{B}.yaml").read_text().replace("resnet8", "resnet14"))
    with pytest.raises(SuiteError, match=rf"method kd on {B} .*model.name=resnet14 but the pair's student is resnet8"):
        plan_suite(_options(pair_suite, tmp_path))


# ---------------------------------------------------------------------------------------------- dry run
def test_dry_run_lists_each_missing_teacher_once_and_exits_4(pair_suite, tmp_path, capsys):
    (tmp_path / "weights" / "resnet20.pth").unlink()
    code = main(["bench", "suite", str(pair_suite), "--dry-run", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 4
    assert f"run:kd:{B}:1" in out  # the whole plan is still listed
    assert out.count("teacher.checkpoint=weights/resnet20.pth (from") == 1
    assert "needed by kd, kd-slow on resnet20_resnet8" in out and "not ready: configs validate, files are missing" in out
    with pytest.raises(SuiteError, match=r"teacher.checkpoint=weights/resnet20.pth .*does not exist"):
        plan_suite(_options(pair_suite, tmp_path))  # a real run stops before anything trains


def test_dry_run_of_an_invalid_recipe_exits_2_naming_it(pair_suite, tmp_path, capsys):
    (pair_suite / "at" / f"{A}.yaml").write_text((pair_suite / "at" / f"{A}.yaml").read_text().replace("weight: 1000", "wieght: 1000"))
    code = main(["bench", "suite", str(pair_suite), "--dry-run", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 2
    assert f"method at on {A} (" in out and "wieght" in out


def test_dry_run_ready_exits_0_and_writes_the_published_table(pair_suite, tmp_path):
    lines: list[str] = []
    doc = tmp_path / "doc.md"
    plan = dry_run(_options(pair_suite, tmp_path, doc=doc), echo=lines.append)
    assert plan.problems.exit_code == 0
    assert "ready: every config validates and every file is present" in lines and lines[-1].startswith("wrote")
    text = doc.read_text()
    assert "## Published numbers" in text and f"| {A} | 1.00 | 1.50 | 99.00 | 97.00 | - |" in text
    assert "| kd | `kd/{pair}.yaml` |" in text and "## Results: not yet run" in text


# ---------------------------------------------------------------------------------------------- the run
def test_every_pair_gets_its_teacher_and_method_rows(finished):
    result, _ = finished
    assert result.exit_code == 0 and not result.failures
    assert [(r["pair"], r["method"]) for r in result.rows] == [
        (A, "teacher"), (A, "student"), (A, "kd"), (A, "at"), (A, "kd-slow"),
        (B, "teacher"), (B, "student"), (B, "kd"), (B, "kd-slow"),
    ]
    rows = _rows(result)
    assert rows[(A, "student")]["pairs"] == [A, B] and rows[(A, "student")]["runs"] == rows[(B, "student")]["runs"]
    assert all(rows[(p, m)]["seeds"] == 2 for p in (A, B) for m in ("student", "kd", "kd-slow"))
    saved = json.loads((result.plan.out_dir / "results.json").read_text())
    assert [(r["pair"], r["method"]) for r in saved] == [(r["pair"], r["method"]) for r in result.rows]


def test_each_teacher_is_evaluated_once_and_linked(finished):
    result, root = finished
    for label in ("resnet14", "resnet20"):
        folder = result.plan.out_dir / "teachers" / label
        assert json.loads((folder / "pretrained.json").read_text())["checkpoint"] == str(root / "weights" / f"{label}.pth")
        assert Path(os.readlink(folder / f"{label}.pth")) == root / "weights" / f"{label}.pth"
    caches = result.plan.out_dir / "teacher_cache"
    assert sorted(p.name for p in caches.iterdir()) == ["resnet14", "resnet20"]  # one cache per teacher and seed


def test_gains_are_against_each_methods_baseline_in_the_same_pair(finished):
    result, _ = finished
    rows = _rows(result)
    for pair in (A, B):
        slow, kd, student = rows[(pair, "kd-slow")], rows[(pair, "kd")], rows[(pair, "student")]
        assert slow["baseline"] == "kd" and slow["gain"] == pytest.approx(slow["top1_mean"] - kd["top1_mean"])
        assert kd["baseline"] == "student" and kd["gain"] == pytest.approx(kd["top1_mean"] - student["top1_mean"])
    assert rows[(A, "teacher")]["gain"] is None


def test_published_numbers_deltas_and_marks(finished):
    result, _ = finished
    rows = _rows(result)
    kd = rows[(A, "kd")]
    assert kd["published_top1"] == 99.0 and kd["published_source"] == "table A"
    assert kd["delta_top1"] == pytest.approx(kd["top1_mean"] - 99.0)
    assert kd["delta_best_top1"] == pytest.approx(kd["best_top1_mean"] - 99.0)
    assert kd["outside_final"] is True and kd["outside_best"] is True
    assert rows[(A, "at")]["published_source"] == "table B"
    for key in ((A, "kd-slow"), (B, "student"), (B, "teacher")):
        assert rows[key]["published_top1"] is None and rows[key]["delta_top1"] is None and rows[key]["outside_final"] is None
    assert rows[(A, "teacher")]["published_top1"] == 1.0 and rows[(A, "teacher")]["band_final"] == 0.5


def test_report_has_a_table_per_pair_with_published_columns(finished):
    result, _ = finished
    text = (result.plan.out_dir / "report.md").read_text()
    for heading in ("### resnet14 -> resnet8", "### resnet20 -> resnet8", "## Against the published numbers",
                    "### Overview", "## Teachers", "## Cost", "## Machine"):
        assert heading in text
    assert "| method | n | final top-1 % | best-epoch top-1 % | gain | published | Δ final | Δ best |" in text
    assert "| 99.00 |" in text and " !" in text
    assert "Absent (no config for this pair): at." in text and "absent (no config, so not run): at on resnet20_resnet8" in text
    assert "no published number in the manifest for: kd-slow" in text
    assert f"| {B} | " in text and "| absent |" in text  # the overview marks the absent (method, pair)


def test_running_again_reuses_every_run_and_evaluation(finished, monkeypatch):
    result, root = finished
    monkeypatch.chdir(root)
    again = run_suite(_options(root / "suite", root), echo=lambda line: None)
    assert again.exit_code == 0 and all(o.reused for o in again.outcomes)
    assert [r.get("top1_mean") for r in again.rows] == [r.get("top1_mean") for r in result.rows]


def test_kdlab_report_groups_each_method_and_pair(finished):
    result, _ = finished
    groups = {g.label: len(g.runs) for g in collect_groups([result.plan.out_dir / "runs"])}
    assert groups == {"student/resnet8": 2, f"kd/{A}": 2, f"kd/{B}": 2, f"at/{A}": 2, f"kd-slow/{A}": 2,
                      f"kd-slow/{B}": 2}
