"""``kdlab bench suite --report-only --previous RESULTS.json``: earlier rows stand for the methods not rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, run_suite
from kdlab.benchmarks.suite_carry import CARRIED_MARK, carry_mismatch, load_previous_rows
from kdlab.benchmarks.suite_values import SuiteError
from kdlab.cli.main import main


def _options(suite: Path, out: Path, **changes) -> SuiteOptions:
    return SuiteOptions(suite_dir=suite, out_dir=out, mini=True, **changes)


@pytest.fixture
def earlier_and_partial(tiny_suite, tmp_path):
    """The mini suite (student + kd) finished in ``earlier``; only the student rerun in ``partial``."""
    earlier = run_suite(_options(tiny_suite, tmp_path / "earlier"), echo=lambda line: None)
    assert earlier.exit_code == 0
    partial = run_suite(_options(tiny_suite, tmp_path / "partial", methods=("student",)), echo=lambda line: None)
    assert partial.exit_code == 0
    return tiny_suite, earlier, tmp_path


def test_rows_of_methods_not_rerun_are_carried_marked_and_get_gains_against_the_new_baseline(earlier_and_partial):
    suite, earlier, tmp = earlier_and_partial
    previous = tmp / "earlier" / "results.json"
    # the mini suite distils from the pretrained teacher; a full suite's results.json starts with its fine-tune
    rows = json.loads(previous.read_text())
    previous.write_text(json.dumps([{"method": "teacher", "seeds": 1, "top1_mean": 55.5}, *rows]))
    report = run_suite(_options(suite, tmp / "partial", report_only=True, previous=previous, doc=tmp / "doc.md"),
                       echo=lambda line: None)
    assert report.exit_code == 0 and not report.failures  # kd's unrun seed is stood for by its carried row
    rows = {row["method"]: row for row in report.rows}
    assert list(rows) == ["student", "kd"]
    old_kd = next(row for row in earlier.rows if row["method"] == "kd")
    assert rows["kd"]["top1_mean"] == old_kd["top1_mean"] and rows["kd"]["runs"] == old_kd["runs"]
    assert rows["kd"]["carried_from"].endswith("results.json") and "carried_from" not in rows["student"]
    assert rows["kd"]["gain"] == pytest.approx(old_kd["top1_mean"] - rows["student"]["top1_mean"])
    document = (tmp / "doc.md").read_text()
    assert f"| kd {CARRIED_MARK} |" in document and f"| student {CARRIED_MARK}" not in document
    assert "carried from" in document
    assert rows["kd"]["carried_teacher_top1"] == 55.5 and "carried_teacher_top1" not in rows["student"]
    assert "teacher" not in rows  # the earlier teacher row is not carried: it is not one of the planned methods
    assert "(55.50% top-1 after its fine-tune)" in document
    # the written rows keep the marker, so a later report carried from them still names the first source
    saved = json.loads((tmp / "partial" / "results.json").read_text())
    assert next(r for r in saved if r["method"] == "kd")["carried_from"] == rows["kd"]["carried_from"]


def test_a_row_from_another_config_is_not_carried_and_its_runs_stay_unfinished(earlier_and_partial):
    suite, _, tmp = earlier_and_partial
    rows = json.loads((tmp / "earlier" / "results.json").read_text())
    for row in rows:
        if row["method"] == "kd":
            row["terms"] = "1*ce + 1*kd"
    previous = tmp / "changed.json"
    previous.write_text(json.dumps(rows))
    lines: list[str] = []
    report = run_suite(_options(suite, tmp / "partial", report_only=True, previous=previous), echo=lines.append)
    assert report.exit_code == 1 and [f["task"] for f in report.failures] == ["run:kd:0"]
    assert [row["method"] for row in report.rows] == ["student"]
    assert any("kd not carried" in line and "terms" in line for line in lines)


def test_carry_mismatch_names_the_first_differing_field():
    planned = {"config": "a.yaml", "terms": "1*ce", "model": "resnet8", "epochs": 10}
    assert carry_mismatch(dict(planned), planned) is None
    assert carry_mismatch({**planned, "epochs": 5}, planned) == "its epochs was 5, the planned runs have 10"


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ('{"method": "kd"}', "not a suite's results.json"),
    ('[{"top1_mean": 1}]', "not a suite's results.json"),
    ('[{"method": "kd", "pair": "a_b"}]', "suite with pairs"),
])
def test_a_file_that_is_not_a_results_json_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(SuiteError, match=message):
        load_previous_rows(path)
    with pytest.raises(SuiteError, match="cannot read it"):
        load_previous_rows(tmp_path / "absent.json")


def test_cli_previous_needs_report_only_and_a_readable_file(tiny_suite, tmp_path, capsys):
    code = main(["bench", "suite", str(tiny_suite), "--mini", "--previous", str(tmp_path / "x.json"),
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "needs --report-only" in capsys.readouterr().err
    code = main(["bench", "suite", str(tiny_suite), "--mini", "--report-only", "--previous",
                 str(tmp_path / "absent.json"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "absent.json" in err and "cannot read it" in err
