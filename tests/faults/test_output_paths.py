"""Outputs go only to regular files or new paths (issue 21).

A named pipe, a folder or a link to a device at an output path is refused before any work, in one
line naming the path and what it is (exit 2), and is left exactly as it was: an atomic write
(temporary file + rename) used to replace ``/dev/null`` itself when run as root. A regular file is
still overwritten atomically (a new inode, the old one never half-written) and a new path is
created. Nothing here needs root: the device is reached through a symbolic link to ``/dev/null``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

from kdlab.checkpoint_io import (
    OutputPathError,
    atomic_copy,
    atomic_save,
    atomic_write_text,
    check_output_file,
    check_output_folder,
)
from kdlab.cli.main import main

DEVICE = Path("/dev/null")


@pytest.fixture(autouse=True)
def no_blocking() -> Iterator[None]:
    """Opening a named pipe blocks until the other end opens: a regression must fail, not hang."""

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("blocked on a named pipe: an output path was opened instead of refused")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(25)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ the three special paths
def make_fifo(folder: Path) -> Path:
    path = folder / "pipe.out"
    os.mkfifo(path)
    return path


def make_folder(folder: Path) -> Path:
    path = folder / "a_folder.out"
    path.mkdir()
    (path / "keep.txt").write_text("mine\n")
    return path


def make_device_link(folder: Path) -> Path:
    path = folder / "null.out"
    path.symlink_to(DEVICE)
    return path


SPECIAL = {"fifo": make_fifo, "folder": make_folder, "device_link": make_device_link}
KIND_WORDS = {"fifo": "named pipe (FIFO)", "folder": "a folder", "device_link": "a character device"}


def assert_untouched(kind: str, path: Path) -> None:
    if kind == "fifo":
        assert stat.S_ISFIFO(path.lstat().st_mode)
    elif kind == "folder":
        assert path.is_dir() and not path.is_symlink()
        assert sorted(p.name for p in path.iterdir()) == ["keep.txt"]
        assert (path / "keep.txt").read_text() == "mine\n"
    else:
        assert path.is_symlink() and os.readlink(path) == str(DEVICE)
        assert stat.S_ISCHR(DEVICE.stat().st_mode)
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")], "no temporary file is left"


@pytest.fixture(params=sorted(SPECIAL))
def special(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    return request.param, SPECIAL[request.param](tmp_path)


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, path: Path, kind: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0] and KIND_WORDS[kind] in lines[0], lines[0]


# ------------------------------------------------------------------ the helper
def test_check_output_file_names_what_the_path_is(special: tuple[str, Path]) -> None:
    kind, path = special
    with pytest.raises(OutputPathError) as caught:
        check_output_file(path, "--out")
    message = str(caught.value)
    assert message.startswith(f"--out {path} is ") and "not a regular file" in message
    assert KIND_WORDS[kind] in message
    assert_untouched(kind, path)


def test_check_output_file_accepts_regular_files_and_new_paths(tmp_path: Path) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(existing)
    assert check_output_file(existing) == existing
    assert check_output_file(link) == link
    assert check_output_file(tmp_path / "new" / "deeper" / "file.txt") == tmp_path / "new" / "deeper" / "file.txt"


def test_check_output_file_refuses_a_dangling_link_and_a_file_as_folder(tmp_path: Path) -> None:
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(OutputPathError, match="symbolic link to .*missing, which does not exist"):
        check_output_file(dangling, "--out")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match=r"cannot be created: .*blocker is a regular file, not a folder"):
        check_output_file(blocker / "report.md", "--out")
    assert blocker.read_text() == "x"


def test_check_output_folder(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    for path, words in ((fifo, "named pipe (FIFO), not a folder"), (regular, "a regular file, not a folder"),
                        (make_device_link(tmp_path), "a character device, not a folder")):
        with pytest.raises(OutputPathError, match=r"--cache .* " + words.replace("(", r"\(").replace(")", r"\)")):
            check_output_folder(path, "--cache")
    assert check_output_folder(tmp_path) == tmp_path
    assert check_output_folder(tmp_path / "new") == tmp_path / "new"


# ------------------------------------------------------------------ the atomic writers
WRITERS: dict[str, Callable[[Path, Path], object]] = {
    "atomic_save": lambda path, scratch: atomic_save({"w": torch.ones(2)}, path, what="--out"),
    "atomic_write_text": lambda path, scratch: atomic_write_text(path, "text\n", what="--out"),
    "atomic_copy": lambda path, scratch: atomic_copy(scratch, path, what="--out"),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_atomic_writers_refuse_special_paths(writer: str, special: tuple[str, Path], tmp_path: Path) -> None:
    kind, path = special
    source = tmp_path / "source.bin"
    source.write_bytes(b"bytes")
    with pytest.raises(OutputPathError, match="not a regular file"):
        WRITERS[writer](path, source)
    assert_untouched(kind, path)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_atomic_writers_replace_a_regular_file_and_create_a_new_one(writer: str, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"bytes")
    existing = tmp_path / "existing.out"
    existing.write_bytes(b"old contents")
    os.chmod(existing, 0o640)
    inode = existing.stat().st_ino
    WRITERS[writer](existing, source)
    assert existing.read_bytes() != b"old contents"
    assert existing.stat().st_ino != inode, "replaced by a rename, not rewritten in place"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640, "the replaced file's permissions are kept"
    fresh = tmp_path / "fresh.out"
    WRITERS[writer](fresh, source)
    assert fresh.is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask, "a new file is not private to its owner"
    assert not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------ writers of run folders and caches
def test_metrics_log_refuses_a_pipe_without_blocking(tmp_path: Path) -> None:
    from kdlab.engine.metrics_log import MetricsLog, MetricsLogError

    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo)
    log = MetricsLog(fifo)
    with pytest.raises(OutputPathError, match="named pipe"):
        log.append({"epoch": 0})
    with pytest.raises(MetricsLogError, match="named pipe"):
        log.read()
    with pytest.raises(MetricsLogError, match="named pipe"):
        log.truncate_after(1)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_metrics_log_rewrite_stays_atomic(tmp_path: Path) -> None:
    from kdlab.engine.metrics_log import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    for epoch in range(3):
        log.append({"epoch": epoch})
    log.truncate_after(2)
    assert [row["epoch"] for row in log.read()] == [0, 1]
    assert not list(tmp_path.glob(".*.tmp"))


def test_csv_mirror_never_removes_or_replaces_a_special_file(tmp_path: Path) -> None:
    from kdlab.engine.loggers import write_csv_mirror

    jsonl = tmp_path / "metrics.jsonl"
    csv_fifo = tmp_path / "metrics.csv"
    os.mkfifo(csv_fifo)
    for present in (False, True):  # no jsonl: the mirror used to be unlinked; with one: replaced
        if present:
            jsonl.write_text(json.dumps({"epoch": 0, "loss": 1.0}) + "\n")
        with pytest.raises(OutputPathError, match="metrics CSV .* named pipe"):
            write_csv_mirror(jsonl, csv_fifo)
        assert stat.S_ISFIFO(csv_fifo.lstat().st_mode)
    regular = tmp_path / "ok.csv"
    write_csv_mirror(jsonl, regular)
    assert regular.read_text().splitlines() == ["epoch,loss", "0,1.0"]


def test_teacher_cache_writer_refuses_a_pipe(tmp_path: Path) -> None:
    from kdlab.cache.storage import CacheWriter

    fifo = make_fifo(tmp_path)
    with pytest.raises(OutputPathError, match="teacher cache .* named pipe"):
        CacheWriter(fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fast_path_cache_leaves_a_special_file_in_its_place(tmp_path: Path) -> None:
    import numpy as np

    from kdlab.data import cache as data_cache

    fifo = tmp_path / "fast-entry"
    os.mkfifo(fifo)
    arrays = (np.zeros((1, 3, 2, 2), np.uint8), np.zeros(1, np.int64), np.zeros(1, np.int64))
    with pytest.raises(OSError, match="not a cache folder"):
        data_cache._write(fifo, *arrays, {"format": data_cache.CACHE_FORMAT})
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


# ------------------------------------------------------------------ the command line
def test_report_refuses_special_outputs_before_reading_runs(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                            special: tuple[str, Path]) -> None:
    kind, path = special
    missing_runs = str(tmp_path / "no_such_runs")  # read only after the outputs are checked
    for option in ("--out", "--csv", "--json"):
        code, _, err = cli(capsys, "report", missing_runs, option, str(path))
        assert_refused(code, err, path, kind)
        assert err.startswith(f"kdlab report: error: {option} ")
    assert_untouched(kind, path)


def test_report_plots_refuses_a_pipe_as_folder_or_as_figure(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    code, _, err = cli(capsys, "report", str(tmp_path / "runs"), "--plots", str(fifo))
    assert_refused(code, err, fifo, "fifo")
    plots = tmp_path / "plots"
    plots.mkdir()
    figure = plots / "accuracy.png"
    os.mkfifo(figure)
    code, _, err = cli(capsys, "report", str(tmp_path / "runs"), "--plots", str(plots))
    assert_refused(code, err, figure, "fifo")
    assert stat.S_ISFIFO(figure.lstat().st_mode)


def test_report_overwrites_a_regular_file_atomically_and_creates_new_paths(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    run = write_run(tmp_path / "runs" / "kd", [50.0, 60.0])
    table = tmp_path / "table.md"
    table.write_text("old\n")
    inode = table.stat().st_ino
    new_json = tmp_path / "new" / "sub" / "rows.json"
    code, out, err = cli(capsys, "report", str(run.parent), "--out", str(table), "--json", str(new_json))
    assert code == 0, err
    assert out == ""
    assert table.read_text().startswith("| method |") and table.stat().st_ino != inode
    assert json.loads(new_json.read_text())[0]["method"] == "kd"


def write_run(path: Path, top1: list[float]) -> Path:
    """A completed run folder as the trainer leaves it: config.yaml, metrics.jsonl, final.json."""
    from kdlab.config import dump_yaml, load_config

    path.mkdir(parents=True)
    (path / "config.yaml").write_text(dump_yaml(load_config(None, [f"trainer.out_dir={path}"])))
    rows = [{"epoch": epoch, "val_top1": value, "seconds": 1.0} for epoch, value in enumerate(top1)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (path / "final.json").write_text(json.dumps({"completed": True, "epochs": len(top1), "train_seconds": 2.0}))
    return path


def fresh_special(folder: Path, kind: str) -> Path:
    """A special path of ``kind`` in its own sub-folder of ``folder`` (several kinds in one test)."""
    (folder / kind).mkdir()
    return SPECIAL[kind](folder / kind)


def tiny_config(folder: Path, *lines: str) -> Path:
    path = folder / "tiny.yaml"
    path.write_text("\n".join([
        "data: {name: synthetic, synthetic_train: 16, synthetic_test: 8, synthetic_classes: 2, synthetic_size: 8,"
        " num_workers: 0}",
        f"trainer: {{device: cpu, progress: none, out_dir: {folder / 'run'}}}",
        # a teacher file that does not exist: a command that got past its output check would name it
        f"teacher: {{name: resnet8, checkpoint: {folder / 'no_such_teacher.pt'}}}",
        *lines,
    ]) + "\n")
    return path


def test_knn_index_refuses_special_out_before_any_work(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                       special: tuple[str, Path]) -> None:
    kind, path = special
    code, _, err = cli(capsys, "knn-index", str(tiny_config(tmp_path)), "--out", str(path))
    assert_refused(code, err, path, kind)
    assert "no_such_teacher" not in err
    assert_untouched(kind, path)


def test_knn_index_checks_data_knn_index_too(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    link = make_device_link(tmp_path)
    code, _, err = cli(capsys, "knn-index", str(tiny_config(tmp_path)), f"data.knn_index={link}")
    assert_refused(code, err, link, "device_link")
    assert "data.knn_index" in err


def test_cache_teacher_refuses_a_non_folder_before_any_work(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, "distill: {terms: [{name: kd}]}")
    for kind in ("fifo", "device_link"):
        path = fresh_special(tmp_path, kind)
        code, _, err = cli(capsys, "cache-teacher", str(config), "--out", str(path))
        assert_refused(code, err, path, kind)
        assert "not a folder" in err and "no_such_teacher" not in err
        assert_untouched(kind, path)


def test_export_refuses_special_out_before_loading(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    for kind in ("fifo", "device_link"):
        path = fresh_special(tmp_path, kind)
        code, _, err = cli(capsys, "export", str(tmp_path / "no_such_run"), "--format", "torchscript",
                           "--out", str(path))
        assert_refused(code, err, path, kind)
        assert_untouched(kind, path)


def test_profile_refuses_a_pipe_at_profile_json_before_measuring(capsys: pytest.CaptureFixture,
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    target = run / "profile.json"
    os.mkfifo(target)
    code, _, err = cli(capsys, "profile", str(run), "--json")
    assert_refused(code, err, target, "fifo")
    assert "--no-write" in err
    assert stat.S_ISFIFO(target.lstat().st_mode)


def test_bench_suite_refuses_special_doc_and_results_json(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                          special: tuple[str, Path]) -> None:
    kind, path = special
    for option in ("--doc", "--results-json"):
        code, _, err = cli(capsys, "bench", "suite", str(tmp_path / "no_such_suite"), option, str(path))
        assert_refused(code, err, path, kind)
        assert option in err
    assert_untouched(kind, path)


def test_bench_throughput_refuses_a_pipe_as_cache(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    code, _, err = cli(capsys, "bench", "throughput", str(tiny_config(tmp_path)), "--cache", str(fifo))
    assert_refused(code, err, fifo, "fifo")


def test_eval_refuses_a_special_plot_before_evaluating(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                       special: tuple[str, Path]) -> None:
    kind, path = special
    code, _, err = cli(capsys, "eval", str(tiny_config(tmp_path)), "--checkpoint", str(tmp_path / "no.pt"),
                       "--manifold", "--plot", str(path))
    assert_refused(code, err, path, kind)
    assert "--plot" in err
    assert_untouched(kind, path)
