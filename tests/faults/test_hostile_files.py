"""Files kdlab reads that could do harm or lose a run (issue 21): crafted CIFAR pickles, torn metrics.jsonl."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from _fault_helpers import TINY, empty_config

from kdlab.cli.main import main
from kdlab.data import DataError
from kdlab.data.sources.cifar import _load_pickle
from kdlab.engine.metrics_log import MetricsLog, MetricsLogError


class _RunsAShellCommand:
    """What a crafted pickle does: unpickling calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _cifar10_folder(root: Path, payload: object | None = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": b"x", b"labels": [int(v) for v in rng.integers(0, 10, 4)],
                 b"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8), b"filenames": [b"a"] * 4}
        if payload is not None and name == "data_batch_1":
            batch[b"extra"] = payload
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [str(i).encode() for i in range(10)]}))
    return folder


def test_a_real_format_cifar_batch_loads(tmp_path):
    folder = _cifar10_folder(tmp_path)
    batch = _load_pickle(folder / "data_batch_1")
    assert batch[b"data"].shape == (4, 3072) and batch[b"data"].dtype == np.uint8 and len(batch[b"labels"]) == 4


def test_a_crafted_cifar_batch_cannot_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = _cifar10_folder(tmp_path, payload=_RunsAShellCommand(marker))
    with pytest.raises(DataError, match="names posix.system") as caught:
        _load_pickle(folder / "data_batch_1")
    assert "refusing to load it" in str(caught.value) and not marker.exists()
    code = main(["data", "info", "data.name=cifar10", f"data.root={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "data_batch_1" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not marker.exists()


def test_a_cifar_batch_that_is_not_a_dict_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="holds a list, not the dict"):
        _load_pickle(path)
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="cannot read CIFAR batch file"):
        _load_pickle(path)


def test_a_torn_last_metrics_line_is_skipped_with_a_warning(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"epoch": 1, "val_top1": 50.0})
    with log.path.open("a") as handle:
        handle.write('{"epoch": 2, "val_to')
    with pytest.warns(UserWarning, match="line 2 was cut short"):
        assert log.read() == [{"epoch": 1, "val_top1": 50.0}]
    log.path.write_text('{"epoch": 1\n{"epoch": 2}\n')
    with pytest.raises(MetricsLogError, match="line 1 is not valid JSON"):
        log.read()
    log.path.write_text('[1, 2]\n')
    with pytest.raises(MetricsLogError, match="must be a JSON object"):
        log.read()


def test_resume_auto_after_a_kill_during_a_metrics_append(tmp_path):
    run = tmp_path / "run"
    argv = ["train", str(empty_config(tmp_path)), *TINY, "trainer.epochs=2", f"trainer.out_dir={run}",
            "trainer.progress=none"]
    assert main([*argv, "trainer.stop_after_steps=3"]) == 0
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 1, "train_lo')  # what a SIGKILL in the middle of an append leaves
    with pytest.warns(UserWarning, match="cut short"):
        assert main([*argv, "--resume", "auto"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    clean = tmp_path / "clean"
    assert main([*argv[:-2], f"trainer.out_dir={clean}", "trainer.progress=none"]) == 0
    expected = [json.loads(line)["epoch"] for line in (clean / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == expected  # the torn line is gone, nothing is doubled
    assert not list(run.glob(".metrics.jsonl.*.tmp"))


def test_kdlab_report_skips_a_torn_line_and_names_a_binary_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "val_top1": 40.0}\n{"epoch": 2, "val_top1": 4')
    with pytest.warns(UserWarning, match="cut short"):
        assert main(["report", str(run), "--include-incomplete"]) == 0
    assert "40.00" in capsys.readouterr().out
    (run / "metrics.jsonl").write_bytes(b'{"epoch": 1}\n\xff\xfe\x00garbage\n')
    assert main(["report", str(run), "--include-incomplete"]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl is not UTF-8" in err and err.count("\n") == 1
