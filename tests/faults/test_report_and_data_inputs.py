"""Report, bench and image-folder inputs that used to end in a traceback or a hang (issue 21).

Each test runs the command line in-process (``kdlab.cli.main.main``) and expects either exit 2 with
exactly one error line naming the culprit, or the outcome documented in the command's ``--help``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from PIL import Image

from kdlab.cli.main import main


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse: the usage block, then one error line
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    """stderr without argparse's usage block (its first line starts with "usage:", the rest are indented)."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]


def assert_one_error(code: int, err: str, *named: str) -> str:
    lines = error_lines(err)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ kdlab report
def write_run(path: Path, rows: list[dict], *, config: bool = True, final: object = None) -> Path:
    from kdlab.config import dump_yaml, load_config

    path.mkdir(parents=True)
    if config:
        (path / "config.yaml").write_text(dump_yaml(load_config(None, [f"trainer.out_dir={path}"])))
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    final = {"completed": True, "epochs": 1, "train_seconds": 1.0} if final is None else final
    (path / "final.json").write_text(final if isinstance(final, str) else json.dumps(final))
    return path


def test_report_out_folder_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "kd", [{"epoch": 0, "val_top1": 50.0}])
    folder = tmp_path / "out_folder"
    folder.mkdir()
    code, _, err = cli(capsys, "report", str(run), "--out", str(folder))
    assert_one_error(code, err, f"--out {folder}", "is a folder, not a regular file")
    assert list(folder.iterdir()) == []


def test_report_plots_with_an_empty_metrics_file_skips_the_figures(capsys: pytest.CaptureFixture,
                                                                   tmp_path: Path) -> None:
    """Documented in `kdlab report --help`: a figure with nothing to draw is skipped with a warning, the
    tables are still written, exit 0."""
    run = write_run(tmp_path / "runs" / "empty", [])
    plots = tmp_path / "plots"
    code, out, err = cli(capsys, "report", str(run), "--plots", str(plots))
    assert code == 0, err
    assert "Traceback" not in err
    assert out.startswith("| method |") and "| empty | 1 |" in out
    warnings_ = [line for line in err.splitlines() if line.strip()]
    assert len(warnings_) == 2 and all(line.startswith("kdlab report: warning: ") for line in warnings_), err
    assert "training_curves.png not written" in warnings_[0] and str(run / "metrics.jsonl") in warnings_[0]
    assert "accuracy.png not written" in warnings_[1]
    assert not plots.exists() or not list(plots.glob("*.png"))
    assert "skipped with a warning" in build_help("report")


def build_help(command: str) -> str:
    from kdlab.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return " ".join(sub.choices[command].format_help().split())


def test_report_names_a_run_folder_without_config(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """Documented in `kdlab report --help`: such a run is reported on its own with a warning naming it; two
    of them used to be pooled as two seeds of one config (mean and std over unrelated runs)."""
    write_run(tmp_path / "runs" / "good", [{"epoch": 0, "val_top1": 50.0}])
    bare = [write_run(tmp_path / "runs" / name, [{"epoch": 0, "val_top1": top1}], config=False)
            for name, top1 in (("bare_a", 40.0), ("bare_b", 30.0))]
    code, out, err = cli(capsys, "report", str(tmp_path / "runs"))
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2, err
    for run, line in zip(bare, lines):
        assert line.startswith(f"kdlab report: warning: run folder {run} has no config.yaml"), line
    table = [row for row in out.splitlines() if row.startswith("| ") and "method" not in row]
    assert sorted(row.split(" | ")[:2] for row in table) == [["| bare_a", "1"], ["| bare_b", "1"], ["| good", "1"]]
    assert "reported on its own" in build_help("report")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "is not valid JSON"),
        ("\xff\xfe", "is not UTF-8 text"),
        ([1, 2], "must hold a JSON object"),
        ({"epochs": 3}, "lacks 'completed'"),
        ({"completed": "yes"}, "'completed' must be bool"),
        ({"completed": True, "train_seconds": "fast"}, "'train_seconds' must be int or float"),
    ],
    ids=["not_json", "not_utf8", "list", "missing_completed", "completed_str", "seconds_str"],
)
def test_report_names_a_bad_final_json(capsys: pytest.CaptureFixture, tmp_path: Path, content: object,
                                       says: str) -> None:
    run = write_run(tmp_path / "runs" / "kd", [{"epoch": 0, "val_top1": 50.0}], final=content)
    if content == "\xff\xfe":
        (run / "final.json").write_bytes(b"\xff\xfe")
    code, _, err = cli(capsys, "report", str(run))
    assert_one_error(code, err, str(run / "final.json"), says)


# ------------------------------------------------------------------ kdlab bench: numbers that never end a loop
@pytest.mark.parametrize("seconds", ["inf", "nan", "0", "-1", "-inf", "soon"])
def test_bench_data_refuses_seconds_that_never_end(capsys: pytest.CaptureFixture, seconds: str) -> None:
    code, _, err = cli(capsys, "bench", "data", "data.name=synthetic", f"--seconds={seconds}")  # = keeps -inf a value
    assert_one_error(code, err, "--seconds", seconds)


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "--batch-size", "0"],
        ["throughput", "cfg.yaml", "--seconds", "inf"],
        ["throughput", "cfg.yaml", "--rounds", "0"],
        ["throughput", "cfg.yaml", "--warmup-steps", "-1"],
        ["throughput", "cfg.yaml", "--cache-epochs", "0"],
        ["throughput", "cfg.yaml", "--threads", "0"],
        ["suite", "suite_dir", "--seeds", "0"],
        ["suite", "suite_dir", "--jobs", "-2"],
    ],
    ids=lambda argv: "_".join(a.lstrip("-") for a in (argv[0], argv[-2], argv[-1])),
)
def test_bench_refuses_other_bad_numbers(capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    code, _, err = cli(capsys, "bench", *argv)
    assert_one_error(code, err, argv[-2], argv[-1])


def test_bench_data_function_refuses_inf_too() -> None:
    from kdlab.config import load_config
    from kdlab.data import bench_data

    data = load_config(None, ["data.name=synthetic"]).data
    for seconds in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ValueError, match="seconds must be a finite number > 0"):
            bench_data(data, seconds=seconds)


# ------------------------------------------------------------------ image folders
def image_folder(root: Path, per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for index, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (60 * index, 20 * i, 0)).save(folder / f"{i}.png")
    return root


def data_args(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["data.name=imagefolder", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", *extra]


def test_a_symlink_loop_in_an_image_folder_is_skipped(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """Documented in kdlab.data.sources.imagefolder: a folder link back to a folder above it is skipped with
    a warning naming it; before, it was followed 40 levels deep and counted as hundreds of images."""
    root = image_folder(tmp_path / "ds")
    loop = root / "train" / "cat" / "loop"
    loop.symlink_to("..")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = cli(capsys, "data", "info", *data_args(root, tmp_path), "--json")
    assert code == 0, err
    splits = json.loads(out)["splits"]
    assert splits["train"]["samples"] == 4 and splits["val"]["samples"] == 4
    assert any(str(loop) in str(w.message) and "loop" in str(w.message) for w in caught)


def test_a_folder_linked_twice_is_listed_once(tmp_path: Path) -> None:
    from kdlab.data.sources.imagefolder import list_imagefolder

    root = image_folder(tmp_path / "ds")
    extra = root / "train" / "cat" / "more"
    extra.mkdir()
    Image.new("RGB", (8, 8)).save(extra / "m.png")
    (root / "train" / "cat" / "again").symlink_to("more")
    (root / "train" / "cat" / "more" / "up").symlink_to("../..")  # a loop two levels up: never followed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        listing = list_imagefolder(str(root))
    cats = listing.splits["train"]["cat"]
    assert sorted(Path(name).name for name in cats) == ["0.png", "1.png", "m.png"], cats


def test_a_dangling_image_link_is_skipped_with_on_corrupt_skip(capsys: pytest.CaptureFixture,
                                                               tmp_path: Path) -> None:
    root = image_folder(tmp_path / "ds")
    dangling = root / "train" / "dog" / "gone.png"
    dangling.symlink_to(root / "no_such.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, out, err = cli(capsys, "data", "prepare", *data_args(root, tmp_path, "data.on_corrupt=skip"), "--json")
    assert code == 0, err
    train = json.loads(out)["splits"]["train"]
    assert train["samples"] == 4 and train["skipped"] == 1
    assert train["skipped_files"] == [str(dangling)]
    assert dangling.is_symlink()


def test_a_dangling_image_link_without_skip_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    root = image_folder(tmp_path / "ds")
    dangling = root / "train" / "dog" / "gone.png"
    dangling.symlink_to(root / "no_such.png")
    code, _, err = cli(capsys, "data", "prepare", *data_args(root, tmp_path), "--json")
    assert_one_error(code, err, str(dangling), "symbolic link to a missing file", "data.on_corrupt=skip")
    assert os.path.lexists(dangling)
