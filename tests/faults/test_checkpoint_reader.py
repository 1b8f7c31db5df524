"""Every checkpoint-taking flag and key reads through one classifier (issue 21): one line, exit 2, the right advice."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import torch

from kdlab.checkpoint_io import CheckpointError, UnsafeCheckpointError, describe_object, torch_load_checked
from kdlab.cli.main import main
from kdlab.engine.trainer import train

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
TINY = ["trainer.epochs=1", "trainer.progress=none", "data.subset=64", "trainer.device=cpu"]
SHARED_TEACHER = Path(__file__).resolve().parents[3] / "shared" / "teachers" / "resnet20-12fca82f.th"


class _Payload:
    pass


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt_reader")
    run = root / "run"
    train(DEMO / "student.yaml", [*TINY, f"trainer.out_dir={run}"])
    good = run / "checkpoints" / "last.pt"
    made: dict[str, Path] = {"good": good}

    def write(name: str, data: bytes) -> None:
        made[name] = root / name
        made[name].write_bytes(data)

    write("notes.txt", b"these are my notes, not weights\n")
    write("empty.pt", b"")
    write("half.pt", good.read_bytes()[: good.stat().st_size // 2])
    write("random.bin", bytes(range(7, 256)) * 40)
    with zipfile.ZipFile(root / "other.zip", "w") as archive:
        archive.writestr("readme.md", "a zip, not a torch file")
    made["other.zip"] = root / "other.zip"
    for name, obj in (("tensor.pt", torch.zeros(3, 4)), ("list.pt", [1, 2]), ("strings.pt", {"a": "b", "c": 1}),
                      ("emptydict.pt", {}), ("pickled.pt", {"model": {}, "x": _Payload()})):
        made[name] = root / name
        torch.save(obj, made[name])
    made["folder"] = root / "a_folder"
    made["folder"].mkdir()
    if SHARED_TEACHER.is_file():
        write("half.th", SHARED_TEACHER.read_bytes()[:5000])
    return made


@pytest.mark.parametrize("name, message", [
    ("notes.txt", "is a text file, not a torch checkpoint"),
    ("empty.pt", "is empty (0 bytes)"),
    ("half.pt", "truncated or corrupt torch archive"),
    ("random.bin", "not a torch file"),
    ("other.zip", "a zip archive that is not a torch file"),
    ("folder", "is a folder, not a checkpoint file"),
])
def test_files_that_are_not_checkpoints_say_what_they_are(files, name, message):
    with pytest.raises(CheckpointError, match=re.escape(message)) as caught:
        torch_load_checked(files[name])
    assert not isinstance(caught.value, UnsafeCheckpointError) and "--unsafe-load" not in str(caught.value)


def test_only_a_real_torch_file_with_pickled_objects_gets_the_unsafe_hint(files):
    with pytest.raises(UnsafeCheckpointError, match="--unsafe-load"):
        torch_load_checked(files["pickled.pt"])
    assert isinstance(torch_load_checked(files["good"]), dict)


def test_what_a_torch_file_holds_is_described():
    assert describe_object(torch.zeros(3, 4)) == "a Tensor of shape (3, 4)"
    assert describe_object([1, 2]) == "a list of 2 items"
    assert describe_object({}) == "an empty dict"
    assert describe_object({"a": "b"}) == "a dict of 1 entries (0 tensors; keys 'a')"


def _one_line(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


BAD = ["notes.txt", "empty.pt", "half.pt", "random.bin", "other.zip", "tensor.pt", "list.pt", "strings.pt",
       "emptydict.pt", "folder", "half.th"]


@pytest.mark.parametrize("name", BAD)
def test_kdlab_eval_checkpoint(files, capsys, name):
    if name not in files:
        pytest.skip("needs ../shared/teachers")
    err = _one_line(capsys, ["eval", str(DEMO / "student.yaml"), "--checkpoint", str(files[name])])
    assert name in err and "--unsafe-load" not in err


@pytest.mark.parametrize("name", ["notes.txt", "half.pt", "tensor.pt", "list.pt", "emptydict.pt", "folder"])
def test_teacher_checkpoint_model_checkpoint_and_resume(files, capsys, tmp_path, name):
    bad = str(files[name])
    base = ["train", str(DEMO / "kd.yaml"), *TINY, f"trainer.out_dir={tmp_path / 'run'}"]
    for argv in ([*base, "teacher.name=resnet20", f"teacher.checkpoint={bad}"],
                 [*base, f"teacher.checkpoint={files['good']}", f"model.checkpoint={bad}"],
                 [*base, f"teacher.checkpoint={files['good']}", "--resume", bad]):
        err = _one_line(capsys, argv)
        assert "--unsafe-load" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_pickled_file_through_the_cli_names_the_opt_in(files, capsys):
    err = _one_line(capsys, ["eval", str(DEMO / "student.yaml"), "--checkpoint", str(files["pickled.pt"])])
    assert "--unsafe-load" in err
