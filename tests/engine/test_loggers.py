"""logging.*: TensorBoard event files read back (also across an interrupted and resumed run), the CSV copy of
metrics.jsonl, Weights & Biases through a fake module, and the start-up error for a backend that is missing."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from kdlab.config import ConfigError, dump_yaml, from_dict, load_config
from kdlab.engine.loggers import CSV_NAME, TENSORBOARD_DIR, WANDB_ID_FILE, RunLoggers, write_csv_mirror
from kdlab.engine.trainer import Trainer

# 64 samples / batch 8 = 8 steps per epoch, 2 epochs; a logged step every 3
TINY = [
    "data.name=synthetic",
    "data.synthetic_train=64",
    "data.synthetic_test=16",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    "data.batch_size=8",
    "data.crop_padding=1",
    "data.num_workers=0",
    "model.name=resnet8",
    "trainer.progress=none",
    "trainer.device=cpu",
    "trainer.epochs=2",
    "trainer.log_every=3",
    "schedule.name=cosine",
    "distill.terms=[{name: ce, weight: 0.7}, {name: ce, key: ce_again, weight: 0.3}]",
]
LOGGED_STEPS = [3, 6, 9, 12, 15]
EPOCH_END_STEPS = [8, 16]
#: epoch values that depend on the wall clock, not on what was trained
TIMING = {"epoch/seconds"}


def cfg_for(out: Path, *extra: str):
    return load_config(None, [*TINY, f"trainer.out_dir={out}", *extra])


def train(out: Path, *extra: str, resume: str | None = None):
    return Trainer(cfg_for(out, *extra)).fit(resume=resume)


def scalars(run: Path, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard shows for ``run`` (orphaned events purged, as TensorBoard does)."""
    events = EventAccumulator(str(run / TENSORBOARD_DIR), size_guidance={"scalars": 0}, purge_orphaned_data=purge)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def jsonl_rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def write_orphans(run: Path, steps: dict[int, dict[str, float]]) -> None:
    """Events an interrupted process wrote after its last checkpoint (the resumed run must hide them)."""
    writer = SummaryWriter(log_dir=str(run / TENSORBOARD_DIR))
    for step, values in steps.items():
        for tag, value in values.items():
            writer.add_scalar(tag, value, global_step=step)
    writer.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One uninterrupted run and one stopped mid-epoch (step 5), then at an epoch's end (step 8), then resumed."""
    root = tmp_path_factory.mktemp("logging")
    on = ("logging.tensorboard=true", "logging.csv=true")
    full = train(root / "full", *on)
    assert full.completed
    cut = root / "cut"
    assert not train(cut, *on, "trainer.stop_after_steps=5").completed
    write_orphans(cut, {6: {"train/loss": 1e6, "train/ce": 1e6}, 8: {"epoch/val_top1": -1.0}})
    assert not train(cut, *on, "trainer.stop_after_steps=3", resume="auto").completed
    write_orphans(cut, {9: {"train/loss": 1e6}, 16: {"epoch/train_loss": -1.0}})
    assert train(cut, *on, resume="auto").completed
    return {"full": full.out_dir, "cut": cut}


def test_every_term_the_lr_and_every_epoch_value_are_written(runs: dict[str, Path]):
    series = scalars(runs["full"])
    for tag in ("train/loss", "train/ce", "train/ce_again", "train/lr"):
        assert [step for step, _ in series[tag]] == LOGGED_STEPS, tag
    rows = jsonl_rows(runs["full"])
    numeric = {k for row in rows for k, v in row.items() if isinstance(v, (int, float))}
    assert {t for t in series if t.startswith("epoch/")} == {f"epoch/{k}" for k in numeric}
    for key in numeric:
        assert series[f"epoch/{key}"] == [
            (row["steps"], pytest.approx(row[key], rel=1e-6)) for row in rows
        ], key
    assert [step for step, _ in series["epoch/epoch"]] == EPOCH_END_STEPS
    # the lr at a logged step is the schedule's at that step (cosine: it falls)
    lrs = [value for _, value in series["train/lr"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 0.05
    assert len(list((runs["full"] / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 1


def test_a_resumed_run_shows_every_step_once_with_the_uninterrupted_values(runs: dict[str, Path]):
    full, cut = scalars(runs["full"]), scalars(runs["cut"])
    assert set(cut) == set(full)
    for tag in full:
        steps = [step for step, _ in cut[tag]]
        assert steps == [step for step, _ in full[tag]], tag  # each step once, the orphans gone
        if tag not in TIMING:
            assert cut[tag] == full[tag], tag  # CPU resume is bitwise exact
    # the orphans are in the files; TensorBoard hides them because the resumed writers set purge_step
    raw = scalars(runs["cut"], purge=False)
    assert (6, 1e6) in raw["train/loss"] and (8, -1.0) in raw["epoch/val_top1"]
    # three processes wrote to the folder (and two orphan writers)
    assert len(list((runs["cut"] / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 5


def test_metrics_csv_mirrors_metrics_jsonl_without_duplicate_rows(runs: dict[str, Path]):
    for run in runs.values():
        with (run / CSV_NAME).open(newline="") as handle:
            table = list(csv.DictReader(handle))
        rows = jsonl_rows(run)
        assert [r["epoch"] for r in table] == ["0", "1"]
        assert list(table[0]) == list(rows[0])
        for line, row in zip(table, rows):
            assert {k: float(v) for k, v in line.items()} == pytest.approx({k: float(v) for k, v in row.items()})


def test_csv_columns_are_the_union_of_keys(tmp_path: Path):
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in (
        {"epoch": 0, "train_loss": 1.5},
        {"epoch": 1, "train_loss": 1.0, "val_top1": 50.0, "val_ap": [0.1, 0.2], "note": None},
    )))
    write_csv_mirror(jsonl, tmp_path / CSV_NAME)
    lines = (tmp_path / CSV_NAME).read_text().splitlines()
    assert lines == ["epoch,train_loss,val_top1,val_ap,note", "0,1.5,,,", '1,1.0,50.0,"[0.1, 0.2]",']
    jsonl.unlink()  # no jsonl (a fresh run): no stale copy either
    write_csv_mirror(jsonl, tmp_path / CSV_NAME)
    assert not (tmp_path / CSV_NAME).exists()


def test_nothing_is_written_when_logging_is_off(tmp_path: Path):
    out = train(tmp_path / "plain", "trainer.epochs=1").out_dir
    assert not (out / TENSORBOARD_DIR).exists() and not (out / CSV_NAME).exists()
    assert not (out / WANDB_ID_FILE).exists()


class Unreadable:
    """A step value that fails if anyone reads it: proves a non-main rank touches no tensor (no host sync)."""

    def __float__(self) -> float:
        raise AssertionError("a rank other than 0 read a logged value")


def test_ranks_other_than_0_write_and_read_nothing(tmp_path: Path):
    cfg = cfg_for(tmp_path / "rank1", "logging.tensorboard=true", "logging.csv=true")
    (tmp_path / "rank1").mkdir()
    (tmp_path / "rank1" / "metrics.jsonl").write_text('{"epoch": 0, "steps": 8}\n')
    with RunLoggers(cfg, tmp_path / "rank1", is_main=False).start(0) as loggers:
        assert not loggers.active
        loggers.log_step(3, {"loss": Unreadable()})
        loggers.log_epoch({"epoch": 0, "steps": 8, "val_top1": 1.0})
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == ["metrics.jsonl"]


# ------------------------------------------------------------------ missing backends


@pytest.mark.parametrize(
    ("override", "module", "message"),
    [
        ("logging.tensorboard=true", "torch.utils.tensorboard",
         "logging.tensorboard: true needs the tensorboard package: pip install 'kdlab[tensorboard]'"),
        ("logging.wandb.project=kd", "wandb", "logging.wandb needs the wandb package: pip install 'kdlab[wandb]'"),
    ],
)
def test_a_backend_asked_for_and_not_installed_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, override: str, module: str, message: str
):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    built: list[bool] = []
    monkeypatch.setattr(Trainer, "_build", lambda self: built.append(True))
    with pytest.raises(ConfigError) as caught:
        Trainer(cfg_for(tmp_path / "missing", override))
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert not built  # refused before any data or network is built
    assert not (tmp_path / "missing").exists()


def test_the_cli_reports_a_missing_backend_as_a_config_error(tmp_path: Path, monkeypatch, capsys):
    from kdlab.cli.main import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    (tmp_path / "empty.yaml").write_text("{}\n")
    code = main(["train", str(tmp_path / "empty.yaml"), *TINY, f"trainer.out_dir={tmp_path / 'cli'}",
                 "logging.tensorboard=true"])
    assert code == 2
    assert "pip install 'kdlab[tensorboard]'" in capsys.readouterr().err


# ------------------------------------------------------------------ Weights & Biases (a fake module)


class FakeRun:
    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    def log(self, data: dict[str, float], step: int) -> None:
        self.calls.append(("log", (step, dict(data))))

    def finish(self) -> None:
        self.calls.append(("finish", None))


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """A ``wandb`` module in sys.modules that records init/log/finish (wandb itself is not installed)."""
    calls: list[tuple[str, Any]] = []
    module = types.ModuleType("wandb")

    def init(**kwargs: Any) -> FakeRun:
        calls.append(("init", kwargs))
        return FakeRun(calls)

    module.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def wandb_logs(calls: list[tuple[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    return [args for name, args in calls if name == "log"]


def logged(calls: list[tuple[str, Any]], prefix: str) -> list[int]:
    """The steps of the ``log`` calls that carry a ``prefix`` name."""
    return [step for step, data in wandb_logs(calls) if any(k.startswith(prefix) for k in data)]


def test_wandb_gets_init_log_and_finish_offline_by_default(tmp_path: Path, fake_wandb):
    out = tmp_path / "wb"
    train(out, "logging.wandb.project=kd-tests")
    names = [name for name, _ in fake_wandb]
    assert names[0] == "init" and names[-1] == "finish" and names.count("init") == names.count("finish") == 1
    init = fake_wandb[0][1]
    assert init["project"] == "kd-tests" and init["mode"] == "offline" and init["name"] == "wb"
    assert init["dir"] == str(out) and init["resume"] == "allow"
    assert init["id"] == (out / WANDB_ID_FILE).read_text().strip()
    assert init["config"]["logging"]["wandb"] == {"project": "kd-tests", "name": None, "mode": "offline"}
    assert logged(fake_wandb, "train/") == LOGGED_STEPS
    assert logged(fake_wandb, "epoch/") == EPOCH_END_STEPS
    logs = wandb_logs(fake_wandb)
    step_3 = next(data for step, data in logs if step == 3)
    assert set(step_3) == {"train/loss", "train/ce", "train/ce_again", "train/lr"}
    epoch_16 = next(data for step, data in logs if step == 16 and "epoch/val_top1" in data)
    assert epoch_16["epoch/val_top1"] == jsonl_rows(out)[-1]["val_top1"]


def test_wandb_resume_continues_the_same_run(tmp_path: Path, fake_wandb):
    out = tmp_path / "wb"
    wb = ("logging.wandb.project=kd-tests", "logging.wandb.name=cut-run", "logging.wandb.mode=online")
    train(out, *wb, "trainer.stop_after_steps=5")
    train(out, *wb, resume="auto")
    inits = [args for name, args in fake_wandb if name == "init"]
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"]
    assert [(i["name"], i["mode"]) for i in inits] == [("cut-run", "online")] * 2
    assert [name for name, _ in fake_wandb].count("finish") == 2
    assert logged(fake_wandb, "train/") == LOGGED_STEPS  # 3 before the stop, 6.. after it: none twice


# ------------------------------------------------------------------ the keys


def test_logging_wandb_is_validated():
    with pytest.raises(ConfigError, match=r"^logging\.wandb\.mode='cloud' is not one of offline, online$"):
        load_config(None, ["logging.wandb.project=p", "logging.wandb.mode=cloud"])
    with pytest.raises(ConfigError, match=r"logging\.wandb\.project is required"):
        load_config(None, ["logging.wandb.mode=online"])
    with pytest.raises(ConfigError, match=r"unknown config key logging\.wandb\.entity"):
        load_config(None, ["logging.wandb.project=p", "logging.wandb.entity=me"])
    with pytest.raises(ConfigError, match=r"logging\.wandb must be a mapping"):
        load_config(None, ["logging.wandb=yes"])
    with pytest.raises(ConfigError, match=r"logging\.wandb\.name must be a non-empty string"):
        load_config(None, ["logging.wandb.project=p", "logging.wandb.name=[a]"])
    assert load_config(None, ["logging.wandb=null"]).logging.wandb == {}
    cfg = load_config(None, ["logging.wandb.project=p", "logging.tensorboard=true"])
    assert cfg.logging.wandb == {"project": "p", "name": None, "mode": "offline"}
    import yaml

    assert from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


def test_logging_keys_may_change_on_resume(tmp_path: Path):
    """Where numbers are shown does not change what is learned: a run stopped without logging resumes with it."""
    out = tmp_path / "later"
    train(out, "trainer.stop_after_steps=5")
    assert train(out, "logging.tensorboard=true", "logging.csv=true", resume="auto").completed
    series = scalars(out)
    assert [step for step, _ in series["train/loss"]] == [6, 9, 12, 15]
    assert torch.tensor([v for _, v in series["epoch/epoch"]]).tolist() == [0.0, 1.0]
