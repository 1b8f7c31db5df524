"""``kdlab profile``: a trained student beside its teacher (run folders), configs, report and demo wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlab.cli.main import main
from kdlab.deploy import load_student
from kdlab.deploy.measure import TimingSettings, count_macs, count_parameters
from kdlab.deploy.profile import profile_config, profile_path, profile_run
from kdlab.engine.trainer import train
from kdlab.reporting.demo import profile_best_student, summarize_outcomes
from kdlab.reporting.demo_exec import RunOutcome
from kdlab.reporting.demo_plan import PlannedRun
from kdlab.reporting.runs import load_run

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
TINY = ["trainer.epochs=2", "trainer.progress=none", "data.subset=64", "trainer.device=cpu"]
FAST = TimingSettings(warmup=0, repeats=3, max_seconds=0.05, batch_size=4)
FAST_ARGS = ["--warmup", "0", "--repeats", "3", "--max-seconds", "0.05", "--batch-size", "4"]
NETWORK_KEYS = {"params", "macs", "size_mb", "latency_ms_batch1", "images_per_second", "top1"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    teacher = root / "teacher"
    train(DEMO / "teacher.yaml", [*TINY, f"trainer.out_dir={teacher}"])
    kd = root / "kd"
    train(DEMO / "kd.yaml", [*TINY, f"trainer.out_dir={kd}",
                             f"teacher.checkpoint={teacher / 'checkpoints' / 'best.pt'}"])
    return {"teacher": teacher, "kd": kd}


def _val_top1(run: Path, epoch: int) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(row["val_top1"] for row in rows if row["epoch"] == epoch - 1)


def test_json_schema_counts_and_profile_json(runs, capsys):
    run = runs["kd"]
    assert main(["profile", str(run), "--json", *FAST_ARGS]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run / "profile.json").read_text())  # the same object, written into the run
    assert {"teacher", "student", "ratios"} <= set(printed)
    for who in ("teacher", "student"):
        assert NETWORK_KEYS <= set(printed[who])
        assert printed[who]["size_mb_fp16"] == pytest.approx(printed[who]["size_mb"] / 2, rel=0.1)
        assert printed[who]["latency_ms_batch1"] > 0 and printed[who]["images_per_second"] > 0
        assert printed[who]["latency"]["batch"]["batch_size"] == 4
    assert {"params", "macs", "latency"} <= set(printed["ratios"])
    student, teacher = printed["student"], printed["teacher"]
    loaded = load_student(run)
    assert student["params"] == count_parameters(loaded.model) == sum(p.numel() for p in loaded.model.parameters())
    assert student["macs"] == count_macs(loaded.model, loaded.example_input(1))
    assert (student["name"], teacher["name"]) == ("resnet8", "resnet20")
    assert printed["ratios"]["params"] == pytest.approx(teacher["params"] / student["params"])
    assert printed["ratios"]["macs"] == pytest.approx(teacher["macs"] / student["macs"])
    assert printed["ratios"]["latency"] == pytest.approx(teacher["latency_ms_batch1"] / student["latency_ms_batch1"])
    assert printed["settings"]["threads"] == 1 and printed["input"] == {"in_chans": 1, "image_size": 8,
                                                                         "num_classes": 10}


def test_top1_of_the_profiled_weights_from_the_runs(runs):
    profile = profile_run(runs["kd"], settings=FAST)
    epoch = load_student(runs["kd"]).epoch
    assert profile["student"]["top1"] == _val_top1(runs["kd"], epoch)
    teacher_epoch = load_student(runs["teacher"]).epoch  # the teacher was given as its best.pt
    assert profile["teacher"]["top1"] == _val_top1(runs["teacher"], teacher_epoch)
    assert profile["top1_delta"] == pytest.approx(profile["student"]["top1"] - profile["teacher"]["top1"])
    assert f"top-1 {profile['top1_delta']:+.1f} points" in profile["summary"]
    last = profile_run(runs["kd"] / "checkpoints" / "last.pt", settings=FAST)
    assert last["student"]["top1"] == _val_top1(runs["kd"], 2) and last["source"]["epoch"] == 2
    assert last["student"]["top1_final"] == _val_top1(runs["kd"], 2)


def test_evaluate_measures_the_same_top1_on_the_eval_split(runs):
    profile = profile_run(runs["kd"], settings=FAST, evaluate=True)
    one_image = 100.0 / 360  # the digits test split
    assert profile["student"]["top1"] == pytest.approx(profile["student"]["top1_best"], abs=one_image)
    assert profile["teacher"]["top1"] == pytest.approx(_val_top1(runs["teacher"], load_student(runs["teacher"]).epoch),
                                                       abs=one_image)
    assert "measured on the evaluation split" in profile["student"]["top1_source"]


def test_report_shows_the_profile(runs, tmp_path, capsys):
    assert main(["profile", str(runs["kd"]), *FAST_ARGS]) == 0
    text = capsys.readouterr().out
    assert "teacher resnet20" in text and "summary: student resnet8 vs teacher resnet20" in text
    assert f"wrote {runs['kd'] / 'profile.json'}" in text
    summary = json.loads((runs["kd"] / "profile.json").read_text())["summary"]
    rows_file = tmp_path / "rows.json"
    assert main(["report", str(runs["kd"]), "--json", str(rows_file)]) == 0
    assert summary in capsys.readouterr().out
    assert json.loads(rows_file.read_text())[0]["profile"]["summary"] == summary


def test_config_profiles_the_architectures(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/demo/teacher does not exist here: its architecture is teacher.yaml's
    profile = profile_config(DEMO / "kd.yaml", settings=FAST)
    assert profile["teacher"]["name"] == "resnet20" and profile["teacher"]["weights"] == "fresh"
    assert profile["student"]["top1"] is None and profile["teacher"]["top1"] is None
    assert profile["source"]["run_dir"] is None and "fresh weights" in profile["summary"]
    assert any("teacher.yaml" in note for note in profile["notes"])
    assert profile["student"]["params"] == profile_run(runs["kd"], settings=FAST)["student"]["params"]
    trained = profile_config(DEMO / "kd.yaml", [f"teacher.checkpoint={runs['teacher']}"], settings=FAST)
    assert trained["teacher"]["weights"] == "trained" and trained["teacher"]["top1"] is not None
    assert not list(tmp_path.iterdir())  # a config profile writes nothing


def test_several_teachers_are_each_profiled(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teachers = (f"teachers={{wide: {{name: wrn_16_2, checkpoint: {tmp_path / 'absent.pt'}}}, "
                f"r20: {{checkpoint: {runs['teacher']}}}}}")
    profile = profile_path(DEMO / "kd.yaml", ["teacher.checkpoint=null", teachers], settings=FAST)
    assert list(profile["teachers"]) == ["wide", "r20"] and profile["teacher_key"] == "wide"
    assert profile["teacher"] == profile["teachers"]["wide"] and profile["teacher"]["name"] == "wrn_16_2"
    assert profile["teachers"]["r20"]["name"] == "resnet20" and profile["teachers"]["r20"]["top1"] is not None
    assert "teacher wide (wrn_16_2; the first of 2 teachers)" in profile["summary"]


@pytest.mark.parametrize(("argv", "message"), [
    (["/nonexistent/run"], "no such run folder or checkpoint file"),
    ([str(DEMO / "teacher.yaml")], "the config names no teacher"),
    ([str(DEMO / "kd.yaml"), "--evaluate"], "--evaluate measures trained networks"),
    ([str(DEMO / "kd.yaml"), "teacher.checkpoint=/absent/run"], "teacher's architecture is unknown"),
    ([str(DEMO / "absent.yaml")], "no such config file"),
    (["RUN", "trainer.epochs=3"], "overrides (trainer.epochs=3) apply to a CONFIG"),
    (["RUN", "--repeats", "1"], "--repeats must be at least 3"),
])
def test_errors_are_one_line_and_exit_2(runs, argv, message, capsys):
    argv = [str(runs["kd"]) if word == "RUN" else word for word in argv]
    assert main(["profile", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("kdlab profile: error: ")


def test_the_demo_profiles_its_best_distilled_student(runs, capsys):
    from kdlab.reporting.demo import DemoResult
    from kdlab.reporting.demo_output import print_summary

    outcomes = [RunOutcome(PlannedRun("teacher", 0, DEMO / "teacher.yaml", runs["teacher"], []),
                           load_run(runs["teacher"]), 1.0),
                RunOutcome(PlannedRun("kd", 0, DEMO / "kd.yaml", runs["kd"], []), load_run(runs["kd"]), 1.0)]
    (runs["kd"] / "profile.json").unlink(missing_ok=True)
    line = profile_best_student(outcomes)
    written = json.loads((runs["kd"] / "profile.json").read_text())
    assert line is not None and line.startswith("profile of kd seed 0 (") and line.endswith(written["summary"])
    assert written["settings"]["repeats"] == 5  # the demo's few forwards
    rows = summarize_outcomes(outcomes)
    assert rows[1]["profile"]["summary"] == written["summary"] and "profile" not in rows[0]
    lines: list[str] = []
    print_summary(DemoResult(runs["kd"].parent, rows, outcomes, profile_line=line), echo=lines.append)
    assert lines[-1] == line
    assert profile_best_student(outcomes[:1]) is None  # no distilled run: no profile line


def test_a_relative_teacher_path_missing_here_says_where_it_is_read_from(runs, tmp_path, monkeypatch):
    import shutil

    import torch

    from kdlab.checkpoint_io import load_checkpoint_file
    from kdlab.config import ConfigError

    moved = tmp_path / "kd"
    shutil.copytree(runs["kd"], moved)
    state = load_checkpoint_file(moved / "checkpoints" / "best.pt")
    state["config"]["teacher"]["checkpoint"] = "runs/teacher"  # as trained from another folder
    torch.save(state, moved / "checkpoints" / "best.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="relative path in the run's config is read from the current folder"):
        profile_run(moved, settings=FAST)


def test_a_recipe_name_is_a_config(tmp_path, monkeypatch):
    """`kdlab profile demo/student` from any directory: the packaged recipe, like every other CONFIG argument."""
    from kdlab.deploy.profile import is_config_path

    monkeypatch.chdir(tmp_path)
    assert is_config_path("demo/student") and not is_config_path(tmp_path)
