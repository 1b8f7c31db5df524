"""Detection runs through the one trainer: exact resume, SIGTERM, the NaN guard, eval, report, task keys."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from det_runs import REPO, STEPS_PER_EPOCH, last_weights, make_canvases, tiny, train, with_teacher
from kdlab.cli.main import main
from kdlab.config import ConfigError, load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import EXIT_PREEMPTED, NonFiniteLossError, Trainer


@pytest.fixture(scope="module")
def canvases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_canvases(tmp_path_factory.mktemp("det") / "data")


@pytest.fixture(scope="module")
def teacher(canvases: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("det-teacher") / "teacher"
    assert train(canvases, run, "trainer.epochs=1", "model.name=det:fasterrcnn_resnet20_fpn").completed
    return run


def test_task_defaults_fill_only_unset_keys() -> None:
    cfg = load_config(None, ["task=detection"])
    assert (cfg.data.augment, cfg.trainer.best_metric, cfg.distill.terms) == ("flip", "val_map", [{"name": "det", "weight": 1.0}])
    cfg = load_config(None, ["task=detection", "data.augment=none", "trainer.best_metric=val_map50"])
    assert (cfg.data.augment, cfg.trainer.best_metric) == ("none", "val_map50")
    plain = load_config(None, [])
    assert (plain.task, plain.data.augment, plain.trainer.best_metric) == ("classification", "crop_flip", "val_top1")


def test_a_detection_run_logs_ap_and_selects_best_by_val_map(canvases: Path, tmp_path: Path) -> None:
    result = train(canvases, tmp_path / "run")
    assert result.completed
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("val_map", "val_map50", "val_map75", "val_map_small", "val_map_medium", "val_map_large",
                "train_det/rpn_objectness", "train_det/roi_cls"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["val_map"] <= 1.0
    assert json.loads((tmp_path / "run" / "final.json").read_text())["best_metric"] == "val_map"


def test_resume_mid_epoch_is_bitwise_exact(canvases: Path, teacher: Path, tmp_path: Path) -> None:
    reference = train(canvases, tmp_path / "reference", *with_teacher(teacher))
    stopped = train(canvases, tmp_path / "run", *with_teacher(teacher), "trainer.stop_after_steps=3")
    assert not stopped.completed and stopped.exit_code == 0
    cut = load_checkpoint_file(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (cut["epoch"], cut["step"]) == (0, 3)
    resumed = train(canvases, tmp_path / "run", *with_teacher(teacher), resume="auto")
    assert resumed.completed
    a, b = last_weights(tmp_path / "reference"), last_weights(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val_map"] for r in reference.history] == [r["val_map"] for r in resumed.history]


def test_teacher_is_frozen_through_training(canvases: Path, teacher: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [*tiny(canvases), f"trainer.out_dir={tmp_path / 'run'}", *with_teacher(teacher),
                             "trainer.epochs=1"])
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.teacher.model.state_dict().items()}
    assert trainer.fit().completed
    assert not trainer.teacher.training and not trainer.teacher.model.training
    assert all(torch.equal(v, trainer.teacher.model.state_dict()[k]) for k, v in before.items())
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


def test_nan_guard_stops_before_the_bad_step_lands(canvases: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [*tiny(canvases), f"trainer.out_dir={tmp_path / 'nan'}"])
    trainer = Trainer(cfg)
    calls = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * float("nan") if calls["n"] > STEPS_PER_EPOCH else grad

    trainer.student.roi_heads.box_predictor.cls_score.weight.register_hook(poison)
    with pytest.raises(NonFiniteLossError, match="roi_heads.box_predictor.cls_score.weight"):
        trainer.fit()
    ckpt = load_checkpoint_file(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)
    assert all(torch.isfinite(v.float()).all() for v in trainer.student.state_dict().values())


def test_sigterm_checkpoints_exits_3_and_resumes(canvases: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (tmp_path / "empty.yaml").write_text("{}\n")
    argv = [sys.executable, "-m", "kdlab", "train", str(tmp_path / "empty.yaml"), *tiny(canvases),
            f"trainer.out_dir={run}", "trainer.epochs=40", "trainer.progress=lines", "trainer.num_threads=1"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "best.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == EXIT_PREEMPTED, f"{out}\n{err}"
    assert "stopped by signal SIGTERM" in out and "--resume auto" in out
    cut = load_checkpoint_file(run / "checkpoints" / "last.pt")
    assert cut["epoch"] >= 1
    resumed = subprocess.run([*argv[:-3], "trainer.epochs=" + str(cut["epoch"] + 1), "trainer.progress=lines",
                              "trainer.num_threads=1", "--resume", "auto"],
                             cwd=REPO, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {run / 'checkpoints' / 'last.pt'}" in resumed.stdout


def test_eval_json_prints_the_ap_keys(canvases: Path, teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = teacher / "config.yaml"
    code = main(["eval", str(config), "--checkpoint", str(teacher / "checkpoints" / "last.pt"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"val_map", "val_map50", "val_map75", "val_map_small", "val_map_medium", "val_map_large"} <= set(result)
    final = json.loads((teacher / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["val_map"] == pytest.approx(final["val_map"], abs=1e-9)


def test_report_groups_detection_runs_with_ap_columns(canvases: Path, teacher: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.md"
    assert main(["report", str(teacher), "--out", str(out), "--json", str(tmp_path / "rows.json")]) == 0
    text = out.read_text()
    assert "final AP" in text and "AP50" in text
    row = json.loads((tmp_path / "rows.json").read_text())[0]
    assert row["metric"] == "val_map" and 0.0 <= row["map_mean"] <= 100.0


def test_mismatched_terms_and_transforms_are_config_errors(canvases: Path, teacher: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"distill.terms\[0\] \(kd\) is a classification term but task=detection"):
        Trainer(load_config(None, [*tiny(canvases), f"trainer.out_dir={tmp_path / 'a'}",
                                   "distill.terms=[{name: kd}]", f"teacher.checkpoint={teacher}"]))
    with pytest.raises(ConfigError, match="is a detection term but task=classification"):
        Trainer(load_config(None, ["data.name=digits", "data.subset=64", f"trainer.out_dir={tmp_path / 'b'}",
                                   "distill.terms=[{name: det}]"]))
    with pytest.raises(ConfigError, match="transforms differ"):
        Trainer(load_config(None, [*tiny(canvases), f"trainer.out_dir={tmp_path / 'c'}", *with_teacher(teacher),
                                   "teacher.kwargs={min_size: 48, max_size: 48}"]))
    with pytest.raises(ConfigError, match="no det: prefix"):
        Trainer(load_config(None, [*tiny(canvases), f"trainer.out_dir={tmp_path / 'd'}", "model.name=resnet8"]))


def test_bench_throughput_measures_a_detection_config_two_ways(canvases: Path, teacher: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "det.yaml"
    config.write_text("{}\n")
    args = ["--seconds", "0.4", "--rounds", "1", "--warmup-steps", "1", "--json"]
    code = main(["bench", "throughput", str(config), *tiny(canvases), *with_teacher(teacher), *args])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kinds"] == ["student_only", "distill_live"] and result["task"] == "detection"
    for kind in result["kinds"]:
        assert result[f"{kind}_ips"] > 0 and result["peak_memory_mb"][kind] > 0
    assert set(result["ratios"]) == {"distill_live/student_only"} and result["cache"] is None
