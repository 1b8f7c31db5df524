"""The suite's ``inherit:`` block: robustness, transfer and retrieval after training, in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, build_tasks, plan_suite, run_suite
from kdlab.benchmarks.suite_inherit import SETTINGS_KEY, add_corruption_ratios, parse_inherit
from kdlab.benchmarks.suite_manifest import SuiteError
from kdlab.benchmarks.suite_runs import task_run

from suite_fixtures import make_tiny_suite

INHERIT = """\
inherit:
  methods: [teacher, student, kd, coss]
  corruptions: [gaussian_noise, contrast]
  severities: [1, 5]
  corruption_samples: 8
  transfer: ["synthetic,synthetic_size=16,synthetic_classes=3,synthetic_train=30,synthetic_test=12"]
  retrieval: true
  manifold: true
  references: [teacher, student]
"""


def _with_inherit(suite: Path, block: str = INHERIT) -> None:
    text = (suite / "suite.yaml").read_text()
    (suite / "suite.yaml").write_text(text.replace("mini:", block + "mini:", 1))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("inherit_suite")
    suite = make_tiny_suite(root)
    _with_inherit(suite)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        lines: list[str] = []
        result = run_suite(SuiteOptions(suite_dir=suite, out_dir=root / "out", methods=("student", "kd", "coss"),
                                        seeds=2), echo=lines.append)
    return result, root, lines


def test_the_chosen_rows_carry_robustness_transfer_retrieval_and_mce(finished):
    result, root, lines = finished
    assert result.exit_code == 0, result.failures
    rows = {row["method"]: row for row in result.rows}

    def makes_errors(method: str) -> bool:  # mCE against a reference that never errs is undefined
        cells = [json.loads((Path(run) / "eval.json").read_text())["last"]["corruptions"] for run in rows[method]["runs"]]
        return any(v < 100.0 for c in cells for by in c.values() for v in by.values())

    assert makes_errors("teacher") or makes_errors("student")
    for method in ("teacher", "student", "kd", "coss"):
        row = rows[method]
        assert 0.0 <= row["mean_corruption_top1_mean"] <= 100.0, method
        assert row["retrieval_map_mean"] is not None
        for reference in ("teacher", "student"):
            assert (f"mce_{reference}_mean" in row) == makes_errors(reference), (method, reference)
        assert any(key.startswith("transfer_synthetic") for key in row)
    assert rows["kd"]["manifold_cka_mean"] is not None and "manifold_cka_mean" not in rows["teacher"]
    assert any("inherit evaluation" in line for line in lines)
    saved = json.loads((Path(rows["kd"]["runs"][0]) / "eval.json").read_text())
    assert saved["last"][SETTINGS_KEY]["corruption_samples"] == 8
    document = (root / "out" / "benchmarks.md").read_text() if (root / "out" / "benchmarks.md").exists() else \
        "\n".join(p.read_text() for p in result.files if p.suffix == ".md")
    assert "## What the networks inherit" in document and "mCE vs teacher %" in document


def test_a_second_invocation_reuses_the_inheritance_results(finished, monkeypatch):
    result, root, _ = finished
    monkeypatch.chdir(root)
    suite = root / "suite"
    lines: list[str] = []
    again = run_suite(SuiteOptions(suite_dir=suite, out_dir=root / "out", methods=("student", "kd", "coss"), seeds=2),
                      echo=lines.append)
    assert again.exit_code == 0 and not any("inherit evaluation" in line for line in lines)
    assert [r.get("mce_teacher_mean") for r in again.rows] == [r.get("mce_teacher_mean") for r in result.rows]


def test_mini_and_unlisted_methods_get_no_inheritance_settings(tiny_suite, tmp_path):
    _with_inherit(tiny_suite)
    plan = plan_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "out"))
    by_key = {task.key: task for task in build_tasks(plan)}
    assert by_key["teacher"].args[2] is not None
    runs = [t for t in by_key.values() if t.fn is task_run and t.key != "teacher"]
    assert {t.args[0].method for t in runs if t.args[2] is not None} == {"student", "kd", "coss"}
    assert [t.args[2] for t in runs if t.args[0].method == "at"] == [None, None]
    mini = plan_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "mini", mini=True))
    assert all(t.args[2] is None for t in build_tasks(mini) if t.fn is task_run)


@pytest.mark.parametrize("block, message", [
    ("inherit: {methods: [nope], retrieval: true}\n", "not rows of the suite"),
    ("inherit: {methods: [kd]}\n", "asks for nothing"),
    ("inherit: {methods: [kd], corruptions: [rain]}\n", "unknown ['rain']"),
    ("inherit: {methods: [kd], retrieval: true, severities: [0]}\n", "severities 1..5"),
    ("inherit: {methods: [kd], retrieval: true, corruption_samples: 0}\n", "corruption_samples"),
    ("inherit: {methods: [kd], retrieval: yes please}\n", "true or false"),
    ("inherit: {methods: [kd], retrieval: true, colour: red}\n", "unknown key(s) ['colour']"),
    ("inherit: {methods: [kd], retrieval: true, references: [kd, nope]}\n", "not rows of the suite"),
])
def test_manifest_errors_name_the_key(tiny_suite, tmp_path, block, message):
    _with_inherit(tiny_suite, block)
    with pytest.raises(SuiteError, match=None) as caught:
        plan_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "out"))
    assert message in str(caught.value) and "inherit" in str(caught.value)


def test_mce_per_run_against_the_reference_rows_mean(tmp_path):
    def run(name: str, cells: dict, clean: float) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "eval.json").write_text(json.dumps({"last": {"corruptions": cells, "corruption_clean_top1": clean}}))
        return str(folder)

    rows = [
        {"method": "teacher", "runs": [run("t", {"fog": {"1": 60.0}}, 90.0)]},
        {"method": "kd", "runs": [run("k0", {"fog": {"1": 50.0}}, 80.0), run("k1", {"fog": {"1": 40.0}}, 80.0)]},
        {"method": "carried", "runs": ["/nonexistent"], "mce_teacher_mean": 1.0},
    ]
    add_corruption_ratios(rows, ["teacher"])
    assert rows[0]["mce_teacher_mean"] == pytest.approx(100.0) and rows[0]["mce_teacher_std"] is None
    assert rows[1]["mce_teacher_mean"] == pytest.approx(100.0 * (50 / 40 + 60 / 40) / 2)
    assert rows[1]["relative_mce_teacher_mean"] == pytest.approx(100.0 * (30 / 30 + 40 / 30) / 2)
    assert rows[2]["mce_teacher_mean"] == 1.0  # a carried row keeps its value
    assert parse_inherit(None, tmp_path / "suite.yaml", ["kd"]) is None
