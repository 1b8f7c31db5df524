"""Aggregation of hand-written run folders: grouping, statistics, final vs best, outputs."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest

from kdlab.cli.main import main
from kdlab.reporting import (
    add_gains,
    collect_groups,
    group_key,
    load_run,
    rows_for,
    run_accuracy,
    to_csv,
    to_markdown,
)

KD = ["distill.terms=[{name: ce, weight: 0.1}, {name: kd, weight: 0.9}]", "teacher.checkpoint=runs/t"]


@pytest.fixture
def two_methods(tmp_path, make_run):
    """student: 3 seeds; kd: 2 seeds; each run's last epoch is below its best."""
    root = tmp_path / "runs"
    make_run(root / "student" / "seed0", [50.0, 80.0, 79.0], seed=0, seconds=3.0)
    make_run(root / "student" / "seed1", [55.0, 82.0, 81.0], seed=1, seconds=5.0)
    make_run(root / "student" / "seed2", [52.0, 78.0, 77.5], seed=2, seconds=4.0)
    make_run(root / "kd" / "seed0", [60.0, 85.0, 84.0], seed=0, overrides=KD)
    make_run(root / "kd" / "seed1", [61.0, 86.0, 86.0], seed=1, overrides=KD)
    return root


def test_runs_differing_only_in_seed_form_one_group(two_methods):
    groups = collect_groups([two_methods])
    assert sorted((g.label, len(g.runs)) for g in groups) == [("kd", 2), ("student", 3)]
    student = next(g for g in groups if g.label == "student")
    assert [run.seed for run in student.runs] == [0, 1, 2]


def test_group_key_ignores_seed_out_dir_and_progress_only(tmp_path, make_run):
    a = load_run(make_run(tmp_path / "a", [1.0], seed=0, overrides=["trainer.progress=none"]))
    b = load_run(make_run(tmp_path / "b", [1.0], seed=7, overrides=["trainer.progress=lines"]))
    c = load_run(make_run(tmp_path / "c", [1.0], seed=0, overrides=["optim.lr=0.2"]))
    assert group_key(a) == group_key(b)
    assert group_key(a) != group_key(c)


def test_final_and_best_statistics(two_methods):
    rows = {row["method"]: row for row in rows_for(collect_groups([two_methods]))}
    student = rows["student"]
    finals, bests = [79.0, 81.0, 77.5], [80.0, 82.0, 78.0]
    assert student["seeds"] == 3 and student["seed_values"] == [0, 1, 2]
    assert student["metric"] == "val_top1"
    assert student["top1_mean"] == pytest.approx(statistics.fmean(finals))
    assert student["top1_std"] == pytest.approx(statistics.stdev(finals))
    assert student["best_top1_mean"] == pytest.approx(statistics.fmean(bests))
    assert student["best_top1_std"] == pytest.approx(statistics.stdev(bests))
    assert student["seconds_mean"] == pytest.approx(4.0)
    assert student["best_top1_mean"] > student["top1_mean"]
    assert rows["kd"]["top1_mean"] == pytest.approx(85.0)
    assert rows["kd"]["best_top1_mean"] == pytest.approx(85.5)
    assert rows["kd"]["terms"] == "0.1*ce + 0.9*kd"


def test_single_run_has_no_std(tmp_path, make_run):
    make_run(tmp_path / "only", [70.0, 75.0])
    (row,) = rows_for(collect_groups([tmp_path]))
    assert row["seeds"] == 1 and row["top1_std"] is None and row["top1_mean"] == 75.0


def test_gain_is_signed_with_standard_error(two_methods):
    rows = {row["method"]: row for row in rows_for(collect_groups([two_methods]), baseline="kd")}
    student, kd = rows["student"], rows["kd"]
    assert kd["gain"] == 0.0
    assert student["gain"] == pytest.approx(student["top1_mean"] - kd["top1_mean"])
    assert student["gain"] < 0  # shown as measured
    expected_se = (student["top1_std"] ** 2 / 3 + kd["top1_std"] ** 2 / 2) ** 0.5
    assert student["gain_se"] == pytest.approx(expected_se)


def test_unknown_baseline_names_the_rows(two_methods):
    rows = rows_for(collect_groups([two_methods]))
    with pytest.raises(ValueError, match="baseline 'nope'.*kd"):
        add_gains(rows, "nope")


def test_incomplete_runs_are_left_out_unless_asked(tmp_path, make_run):
    make_run(tmp_path / "m" / "seed0", [70.0, 71.0], seed=0)
    make_run(tmp_path / "m" / "seed1", [60.0], seed=1, completed=False, epochs=2)
    (row,) = rows_for(collect_groups([tmp_path]))
    assert row["seeds"] == 1
    (row,) = rows_for(collect_groups([tmp_path], include_incomplete=True))
    assert row["seeds"] == 2 and row["completed"] == 1


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no completed run folders"):
        collect_groups([tmp_path])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_groups([tmp_path / "missing"])


def test_label_free_run_is_scored_by_its_linear_probe(tmp_path, make_run):
    evaluation = {"last": {"linear_top1": 90.0, "knn10": 88.0, "manifold_cka": 0.7, "val_top1": 9.0},
                  "best": {"linear_top1": 91.0}}
    run = load_run(make_run(tmp_path / "coss", [85.0, 88.0], overrides=["distill.labels=false"], evaluation=evaluation))
    accuracy = run_accuracy(run)
    assert accuracy == {"metric": "linear_top1", "final": 90.0, "best": 91.0, "epochs": 2}
    (row,) = rows_for(collect_groups([tmp_path]))
    assert row["metric"] == "linear_top1" and row["label_free"] is True
    assert row["manifold_cka_mean"] == 0.7 and row["knn10_mean"] == 88.0
    assert "linear probe" in to_markdown([row])


def test_flat_eval_json_counts_as_last_checkpoint(tmp_path, make_run):
    run = load_run(make_run(tmp_path / "r", [80.0], overrides=["distill.labels=false"], evaluation={"linear_top1": 77.0}))
    assert run_accuracy(run)["final"] == 77.0


def test_broken_metrics_file_names_the_file(tmp_path, make_run):
    path = make_run(tmp_path / "r", [80.0])
    # a damaged line before the last is an error (a torn last line is skipped: tests/faults/test_hostile_files.py)
    (path / "metrics.jsonl").write_text('{"epoch": 0}\nnot json\n{"epoch": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2"):
        load_run(path)


def test_markdown_has_final_and_best_columns(two_methods):
    text = to_markdown(rows_for(collect_groups([two_methods]), baseline="student"))
    header = text.splitlines()[0]
    assert "final top-1" in header and "best-epoch top-1" in header and "gain" in header
    assert "79.17 ± 1.76" in text  # student final: mean and sample std of 79, 81, 77.5


def test_csv_has_one_line_per_row_and_every_field(two_methods):
    rows = rows_for(collect_groups([two_methods]))
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [line["method"] for line in parsed] == [row["method"] for row in rows]
    assert {"top1_mean", "top1_std", "best_top1_mean", "seeds", "seed_values"} <= set(parsed[0])
    student = next(line for line in parsed if line["method"] == "student")
    assert float(student["top1_mean"]) == pytest.approx(79.1666, abs=1e-3)
    assert json.loads(student["seed_values"]) == [0, 1, 2]


def test_report_command_writes_markdown_csv_json_and_plots(two_methods, tmp_path, capsys):
    out, table = tmp_path / "out", tmp_path / "out" / "table.csv"
    code = main(["report", str(two_methods), "--csv", str(table), "--json", str(out / "rows.json"),
                 "--plots", str(out), "--baseline", "student"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| student | 3 |" in printed and "| kd | 2 |" in printed
    assert table.read_text().startswith("method,")
    assert {row["method"] for row in json.loads((out / "rows.json").read_text())} == {"student", "kd"}
    for name in ("training_curves.png", "accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command_errors_name_the_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_report_command_out_file(two_methods, tmp_path):
    target = tmp_path / "report.md"
    assert main(["report", str(two_methods / "kd"), "--out", str(target)]) == 0
    assert target.read_text().startswith("| method |")


def test_rows_with_a_warning_say_so_in_the_table(two_methods):
    rows = rows_for(collect_groups([two_methods]))
    rows[0]["warning"] = "the kd runs used different configs"
    assert f"WARNING {rows[0]['method']}: the kd runs used different configs." in to_markdown(rows)
