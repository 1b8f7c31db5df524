"""Values that type-check but would only break at the first step are refused before it (issue 21, preflight).

Each refusal goes through ``kdlab train`` (``kdlab.cli.main.main``): exit 2, exactly one stderr line naming
the config key and both sides, and nothing written into the run folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _fault_helpers import TINY, empty_config

from kdlab.cli.main import main
from kdlab.config import ConfigError
from kdlab.engine import preflight
from kdlab.models import create_model

KD = "distill.terms=[{name: ce, weight: 0.5}, {name: kd, weight: 0.5}]"
DIGITS = ["data.name=digits", "data.subset=64"]  # 10 classes of 1-channel 8x8 images


def cli(tmp_path: Path, *argv: str) -> list[str]:
    run = f"trainer.out_dir={tmp_path / 'run'}"
    return ["train", str(empty_config(tmp_path)), *TINY, "trainer.epochs=1", run, *argv]


def refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str, run: Path | None = None) -> str:
    """The one stderr line of a refused run; the run folder was not created."""
    code = main(cli(tmp_path, *argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert not (run or tmp_path / "run").exists(), "a refused run wrote into its run folder"
    return err


def weights(tmp_path: Path, name: str, **kwargs: object) -> Path:
    """A weights file of a freshly built zoo network (a teacher needs a checkpoint; trained or not is moot here)."""
    path = tmp_path / f"{name}-{'-'.join(f'{k}{v}' for k, v in kwargs.items()) or 'plain'}.pt"
    torch.save(create_model(name, **kwargs).state_dict(), path)  # type: ignore[arg-type]
    return path


# ---------------------------------------------------------------------------- 1. classes


def test_student_classes_other_than_the_data_are_refused(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, "model.num_classes=3")
    assert "model.num_classes=3" in err and "4 classes" in err and "synthetic" in err


def test_student_with_more_classes_than_the_data_is_refused(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, *DIGITS, "model.num_classes=12")
    assert "model.num_classes=12" in err and "10 classes" in err


def test_teacher_classes_other_than_the_student_are_refused(tmp_path: Path, capsys):
    teacher = weights(tmp_path, "resnet8", num_classes=5)
    err = refused(capsys, tmp_path, "teacher.name=resnet8", f"teacher.checkpoint={teacher}", "teacher.num_classes=5",
                  KD)
    assert "teacher has 5 classes" in err and "student has 4" in err and "teacher.num_classes" in err


def test_label_free_detection_and_wider_frozen_runs_skip_the_classifier_width():
    wide = create_model("resnet8", num_classes=7)
    data = SimpleNamespace(num_classes=4, in_chans=3, image_size=8)
    label_free = SimpleNamespace(task="classification", distill=SimpleNamespace(labels=False))
    frozen = SimpleNamespace(task="classification", distill=SimpleNamespace(labels=True),
                             model=SimpleNamespace(frozen=True))
    detection = SimpleNamespace(task="detection", distill=SimpleNamespace(labels=True))
    preflight.check_classifier_width(label_free, data, wide)
    preflight.check_classifier_width(detection, data, wide)
    preflight.check_classifier_width(frozen, data, wide)  # a frozen network of more classes is only evaluated
    labelled = SimpleNamespace(task="classification", distill=SimpleNamespace(labels=True),
                               model=SimpleNamespace(frozen=False), data=SimpleNamespace(name="x"))
    with pytest.raises(ConfigError, match=r"model.num_classes=7 but the data \(x\) has 4 classes"):
        preflight.check_classifier_width(labelled, data, wide)


# --------------------------------------------------------------------------- 2. channels


def test_student_in_chans_other_than_the_data_is_refused(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, *DIGITS, "model.kwargs.in_chans=3")
    assert "model.kwargs.in_chans=3" in err and "1-channel images" in err and "takes 3 channels" in err


def test_torchvision_student_on_grey_images_is_refused(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, *DIGITS, "model.name=tv:resnet18")
    assert "model.name=tv:resnet18" in err and "RGB only" in err and "1-channel" in err


def test_teacher_in_chans_other_than_the_data_is_refused(tmp_path: Path, capsys):
    grey = weights(tmp_path, "resnet8", num_classes=4, in_chans=1)
    err = refused(capsys, tmp_path, "teacher.name=resnet8", f"teacher.checkpoint={grey}", "teacher.kwargs.in_chans=1",
                  KD)
    assert "teacher.kwargs.in_chans=1" in err and "3-channel images" in err and "takes 1 channel" in err


def test_one_of_several_teachers_with_other_channels_is_named(tmp_path: Path, capsys):
    rgb, grey = weights(tmp_path, "resnet8", num_classes=4), weights(tmp_path, "resnet8", num_classes=4, in_chans=1)
    teachers = (f"teachers={{good: {{name: resnet8, checkpoint: {rgb}}}, "
                f"grey: {{name: resnet8, checkpoint: {grey}, kwargs: {{in_chans: 1}}}}}}")
    err = refused(capsys, tmp_path, teachers, "distill.terms=[{name: ce}, {name: kd, teacher: mean}]")
    assert "teachers.grey.kwargs.in_chans=1" in err and "teacher grey" in err


def test_first_convolution_is_the_stem_of_zoo_torchvision_and_timm_networks():
    assert preflight.input_channels(create_model("resnet8", num_classes=4, in_chans=1)) == 1
    assert preflight.input_channels(create_model("tv:resnet18", num_classes=4)) == 3
    vit = create_model("timm:vit_tiny_patch16_224", num_classes=4, img_size=16, patch_size=8, in_chans=2)
    assert preflight.first_conv(vit)[0].endswith("patch_embed.proj")  # type: ignore[index]
    assert preflight.input_channels(vit) == 2
    assert preflight.input_channels(torch.nn.Linear(3, 2)) is None


# ------------------------------------------------------------------- 3. optional package


def test_timm_model_without_timm_names_the_package_and_extra(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now fails, as without the package
    err = refused(capsys, tmp_path, "model.name=timm:resnet18")
    assert "model.name=timm:resnet18" in err and "optional dependency timm" in err and "kdlab[timm]" in err


# -------------------------------------------------------------------- 4. nothing to train


def test_frozen_student_without_trainable_terms_is_refused(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, "model.frozen=true")
    assert "nothing to train" in err and "model.frozen=true" in err and "(ce)" in err


# ---------------------------------------------------------------------- 5. best metric


def test_unknown_best_metric_names_the_keys_the_run_writes(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, "trainer.best_metric=nonexistent")
    assert "trainer.best_metric=nonexistent" in err
    assert "val_top1, val_top5, val_loss" in err and "train_ce" in err


def test_best_metric_known_only_once_evaluated_is_checked_before_best_pt(tmp_path: Path, capsys):
    # train_ce/<part> would be a part of the ce term: accepted before the first step, refused at the
    # first evaluation (ce has no parts), before metrics.jsonl or any checkpoint is written
    code = main(cli(tmp_path, "trainer.best_metric=train_ce/part"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "trainer.best_metric=train_ce/part" in err and "val_top1" in err
    run = tmp_path / "run"
    assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists()


def test_metric_keys_follow_labels_task_and_terms():
    terms = {"ce": torch.nn.Module(), "kd": torch.nn.Module()}
    labelled = preflight.metric_keys(SimpleNamespace(task="classification"), SimpleNamespace(terms=terms, labels=True))
    assert labelled.evaluated == ("val_top1", "val_top5", "val_loss")
    assert {"train_ce", "train_kd", "train_top1", "train_loss"} <= set(labelled.recorded)
    label_free = preflight.metric_keys(
        SimpleNamespace(task="classification", eval=SimpleNamespace(knn_k=[7])), SimpleNamespace(terms={}, labels=False)
    )
    assert label_free.evaluated == ("val_knn7", "val_top1") and "train_top1" not in label_free.recorded
    class Measures(torch.nn.Module):
        def evaluate(self, model: torch.nn.Module, batches: object) -> dict[str, float]:
            return {"ss_top1": 0.0}

    own = preflight.metric_keys(SimpleNamespace(task="classification"), SimpleNamespace(terms={"ss": Measures()}))
    assert own.open_prefixes == ("train_ss/", "val_ss_") and own.admits("val_ss_ss_top1")
    assert not own.admits("val_kd_ss_top1")
    detection = preflight.metric_keys(SimpleNamespace(task="detection"), SimpleNamespace(terms=terms))
    assert "val_map" in detection.evaluated and "val_map50" in detection.evaluated


def test_first_evaluated_row_check_ignores_rows_without_an_evaluation():
    cfg = SimpleNamespace(trainer=SimpleNamespace(best_metric="val_x_ss_top1"))
    preflight.check_best_metric_recorded(cfg, {"epoch": 0, "train_loss": 1.0})  # no evaluation this epoch
    preflight.check_best_metric_recorded(cfg, {"epoch": 0, "val_top1": 5.0, "val_x_ss_top1": 3.0})
    with pytest.raises(ConfigError, match=r"trainer.best_metric=val_x_ss_top1 .*: epoch, val_top1"):
        preflight.check_best_metric_recorded(cfg, {"epoch": 0, "val_top1": 5.0})


# ---------------------------------------------------------------------------- 6. out_dir


def test_out_dir_that_is_a_device_is_refused(tmp_path: Path, capsys):
    err = refused(capsys, tmp_path, "trainer.out_dir=/dev/null")
    assert "trainer.out_dir=/dev/null" in err and "not a folder" in err


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder\n")
    err = refused(capsys, tmp_path, f"trainer.out_dir={taken}", run=tmp_path / "no-run")
    assert f"trainer.out_dir={taken}" in err and "is a file" in err
    assert taken.read_text() == "not a folder\n"


def test_out_dir_below_a_file_is_refused(tmp_path: Path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    err = refused(capsys, tmp_path, f"trainer.out_dir={taken / 'run'}")
    assert f"trainer.out_dir={taken / 'run'}" in err and f"{taken} is a file" in err


def test_out_dir_in_a_folder_that_refuses_writes_is_refused(tmp_path: Path, capsys, monkeypatch):
    # permission bits do not stop root, so the refusal of the write check is simulated
    def refuse(**_: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(preflight.tempfile, "mkdtemp", refuse)
    err = refused(capsys, tmp_path, f"trainer.out_dir={tmp_path / 'locked' / 'run'}")
    assert f"trainer.out_dir={tmp_path / 'locked' / 'run'}" in err and "Permission denied" in err


def test_existing_out_dir_without_write_permission_is_refused(tmp_path: Path, capsys, monkeypatch):
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: Path(path) != tmp_path / "run")
    code = main(cli(tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"trainer.out_dir={tmp_path / 'run'}" in err and "cannot write" in err
    assert list((tmp_path / "run").iterdir()) == []


def test_out_dir_that_cannot_be_made_leaves_nothing_behind(tmp_path: Path):
    assert preflight.out_dir_problem(tmp_path / "a" / "b") is None
    assert list(tmp_path.iterdir()) == []  # the write check made and removed its probe
    assert "cannot be created in /proc" in str(preflight.out_dir_problem(Path("/proc/kdlab-run")))


# ----------------------------------------------------------------------- input size


def test_student_of_one_resolution_other_than_the_data_is_refused(tmp_path: Path, capsys):
    vit = ["model.name=timm:vit_tiny_patch16_224", "model.kwargs={img_size: 16, patch_size: 8}"]
    err = refused(capsys, tmp_path, *vit)
    assert "16x16" in err and "8x8" in err and "data.image_size" in err and "model.kwargs.img_size=8" in err


# --------------------------------------------------------------------- legit runs still train


def test_a_run_that_passes_preflight_trains(tmp_path: Path, capsys):
    teacher = weights(tmp_path, "resnet8", num_classes=4)
    code = main(cli(tmp_path, "teacher.name=resnet8", f"teacher.checkpoint={teacher}", KD,
                    "trainer.best_metric=val_top5"))
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "run"
    assert (run / "checkpoints" / "best.pt").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_top5" in rows[-1] and "train_kd" in rows[-1]
    keys = preflight.metric_keys(SimpleNamespace(task="classification"),
                                 SimpleNamespace(terms={"ce": None, "kd": None}, labels=True))
    assert all(keys.admits(key) for key in rows[-1]), rows[-1]  # every key the run wrote was foreseen
