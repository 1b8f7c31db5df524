"""Under DDP only rank 0 writes the logging backends, and the run neither hangs nor doubles a step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kdlab.engine.loggers import CSV_NAME, TENSORBOARD_DIR

_HELPERS = Path(__file__).resolve().parents[1] / "distributed" / "_helpers.py"
_spec = importlib.util.spec_from_file_location("kdlab_tests_distributed_helpers", _HELPERS)
assert _spec is not None and _spec.loader is not None
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


@pytest.mark.slow
def test_two_ranks_write_one_set_of_event_files(tmp_path: Path):
    (tmp_path / "empty.yaml").write_text("{}\n")
    out = tmp_path / "ddp"
    # 64 samples / global batch 16 = 4 steps per epoch, 2 epochs, a logged step every 2
    proc = helpers.torchrun(
        ["-m", "kdlab", "train", str(tmp_path / "empty.yaml"), *helpers.TINY, "trainer.epochs=2",
         "trainer.log_every=2", "trainer.progress=none", "logging.tensorboard=true", "logging.csv=true",
         f"trainer.out_dir={out}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, helpers.explain(proc)
    files = list((out / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    events = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the epoch values are the metrics.jsonl row's: means over both ranks
    assert [(e.step, e.value) for e in events.Scalars("epoch/train_loss")] == [
        (row["steps"], pytest.approx(row["train_loss"], rel=1e-6)) for row in rows
    ]
    assert len((out / CSV_NAME).read_text().splitlines()) == 1 + len(rows) == 3
