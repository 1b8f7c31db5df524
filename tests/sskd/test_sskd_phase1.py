"""Phase 1 set-up without training: derived config, artefact location and digest, head files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.config import ConfigError, load_config
from kdlab.engine.checkpoint import CheckpointError
from kdlab.methods.build import prerequisites
from kdlab.methods.sskd import HeadSettings, SSKDTerm, head_run_config, head_run_dir, load_head_state
from kdlab.methods import prerequisite_place

from sskd_testkit import TINY, head_state


@pytest.fixture
def teacher_file(tmp_path: Path) -> Path:
    path = tmp_path / "teachers" / "resnet8.pt"
    path.parent.mkdir()
    torch.save({"model": {"w": torch.arange(4.0)}}, path)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KDLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sskd_cfg(teacher: Path, *extra: str):
    return load_config(
        None,
        [*TINY, "model.name=resnet8", "teacher.name=resnet8", f"teacher.checkpoint={teacher}",
         "trainer.seed=3", "trainer.out_dir=runs/x", "distill.terms=[{name: sskd}]", *extra],
    )


def test_derived_config_is_the_frozen_teacher_with_the_head_recipe(teacher_file: Path):
    cfg = sskd_cfg(teacher_file, "teacher.mean=[0.5, 0.5, 0.5]", "teacher.std=[0.25, 0.25, 0.25]")
    head = head_run_config(cfg, HeadSettings(epochs=60, lr=0.05, milestones=(30, 45)), "somewhere")
    assert head.model.name == "resnet8" and head.model.frozen
    assert Path(head.model.checkpoint) == teacher_file.resolve()
    assert head.distill.terms == [{"name": "sskd_head"}]
    assert (head.trainer.epochs, head.trainer.seed, head.trainer.out_dir) == (60, 0, "somewhere")
    assert (head.optim.name, head.optim.lr, head.optim.momentum, head.optim.weight_decay) == ("sgd", 0.05, 0.9, 5e-4)
    assert (head.schedule.name, head.schedule.milestones, head.schedule.gamma) == ("step", [30, 45], 0.1)
    assert head.data.views == "rotate4" and head.data.batch_size == cfg.data.batch_size
    # the teacher sees the inputs it was trained with
    assert head.data.mean == [0.5, 0.5, 0.5] and head.data.std == [0.25, 0.25, 0.25]
    assert head.teacher.checkpoint is None


def test_run_folder_teacher_supplies_name(tmp_path: Path):
    run = tmp_path / "teacher_run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model": {}}, run / "checkpoints" / "best.pt")
    (run / "config.yaml").write_text("model:\n  name: resnet20\n")
    cfg = load_config(None, [*TINY, f"teacher.checkpoint={run}", "distill.terms=[{name: sskd}]"])
    head = head_run_config(cfg, HeadSettings(), "x")
    assert head.model.name == "resnet20"
    assert Path(head.model.checkpoint) == (run / "checkpoints" / "best.pt").resolve()
    assert head_run_dir(cfg, HeadSettings()).parent == run / "sskd_head"


def test_artefact_lives_beside_the_teacher_keyed_by_file_and_settings(teacher_file: Path, cache: Path):
    cfg = sskd_cfg(teacher_file)
    base = head_run_dir(cfg, HeadSettings())
    assert base.parent == teacher_file.parent / "sskd_head" and len(base.name) == 12
    assert head_run_dir(cfg, HeadSettings()) == base  # stable
    # shared by every seed and output folder of the student
    same = sskd_cfg(teacher_file, "trainer.out_dir=elsewhere", "data.num_workers=1", "trainer.seed=7", "optim.lr=0.3")
    assert head_run_dir(same, HeadSettings()) == base
    logged = sskd_cfg(teacher_file, "logging.tensorboard=true", "logging.csv=true",
                      "logging.wandb={project: p, mode: offline}")
    assert head_run_dir(logged, HeadSettings()) == base  # where numbers are shown is not what the head learns
    assert head_run_dir(cfg, HeadSettings(epochs=59)) != base
    assert head_run_dir(cfg, HeadSettings(lr=0.1)) != base
    assert head_run_dir(cfg, HeadSettings(milestones=(30,))) != base
    assert head_run_dir(sskd_cfg(teacher_file, "data.batch_size=4"), HeadSettings()) != base
    torch.save({"model": {"w": torch.arange(5.0)}}, teacher_file)  # other teacher weights, same path
    assert head_run_dir(cfg, HeadSettings()) != base


def test_read_only_teacher_folder_falls_back_to_the_user_cache(
    teacher_file: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
):
    cfg = sskd_cfg(teacher_file)
    beside = head_run_dir(cfg, HeadSettings())
    teacher_dir = teacher_file.parent.resolve()
    monkeypatch.setattr(prerequisite_place, "is_writable", lambda path: teacher_dir not in Path(path).resolve().parents)
    fallback = head_run_dir(cfg, HeadSettings())
    assert fallback == cache / "sskd_head" / beside.name
    (need,) = prerequisites(cfg)
    assert need.produces == fallback / "final.json" and need.config.trainer.out_dir == str(fallback)
    # a finished head beside the teacher wins, even read-only
    beside.mkdir(parents=True)
    (beside / "final.json").write_text("{}")
    assert head_run_dir(cfg, HeadSettings()) == beside


def test_finished_head_in_the_cache_is_reused(teacher_file: Path, cache: Path):
    cfg = sskd_cfg(teacher_file)
    digest = head_run_dir(cfg, HeadSettings()).name
    (cache / "sskd_head" / digest).mkdir(parents=True)
    (cache / "sskd_head" / digest / "final.json").write_text("{}")
    assert head_run_dir(cfg, HeadSettings()) == cache / "sskd_head" / digest


def test_prerequisites_of_the_sskd_term(teacher_file: Path):
    cfg = sskd_cfg(teacher_file)
    (need,) = SSKDTerm.prerequisites(cfg, {"head_epochs": 7, "head_lr": 0.2, "head_milestones": [5]})
    assert need.produces.name == "final.json"
    assert (need.config.trainer.epochs, need.config.optim.lr, need.config.schedule.milestones) == (7, 0.2, [5])
    assert SSKDTerm.prerequisites(cfg, {"head_checkpoint": "head.pt"}) == []


@pytest.mark.parametrize(
    "params, needle",
    [({"head_epochs": 0}, "head_epochs"), ({"head_lr": -1.0}, "head_lr"), ({"head_milestones": 30}, "head_milestones"),
     ({"head_milestones": [0]}, "head_milestones")],
)
def test_bad_head_settings_name_the_parameter(teacher_file: Path, params, needle):
    with pytest.raises(ValueError, match=needle):
        SSKDTerm.prerequisites(sskd_cfg(teacher_file), params)


def test_missing_teacher_is_a_config_error(tmp_path: Path):
    cfg = load_config(None, [*TINY, "teacher.name=resnet8", f"teacher.checkpoint={tmp_path / 'none.pt'}"])
    with pytest.raises(ConfigError, match="none.pt"):
        SSKDTerm.prerequisites(cfg, {})


@pytest.mark.parametrize("layout", ["kdlab", "official", "bare"])
def test_head_files_in_every_layout(tmp_path: Path, layout: str):
    head = head_state(6, seed=0)
    wrapped = {
        "kdlab": {"model": {}, "method": {f"terms.sskd_head.head.{k}": v for k, v in head.items()}},
        "official": {**{f"proj_head.{k}": v for k, v in head.items()}, "backbone.fc.weight": torch.zeros(2, 6)},
        "bare": head,
    }[layout]
    torch.save(wrapped, tmp_path / "head.pt")
    loaded = load_head_state(tmp_path / "head.pt", dim=6)
    assert all(torch.equal(loaded[k], head[k]) for k in head)


def test_head_files_that_do_not_fit_are_refused(tmp_path: Path):
    torch.save(head_state(6, seed=0), tmp_path / "head.pt")
    with pytest.raises(CheckpointError, match="6 dimensions|expected"):
        load_head_state(tmp_path / "head.pt", dim=8)
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no projection head"):
        load_head_state(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_head_state(tmp_path / "missing.pt")


def test_a_folder_without_write_bits_is_read_only_even_for_root(tmp_path: Path):
    from kdlab.methods.prerequisite_place import is_writable

    shared = tmp_path / "teachers"
    shared.mkdir()
    assert is_writable(shared) and is_writable(shared / "sskd_head" / "x")
    shared.chmod(0o555)
    try:
        assert not is_writable(shared) and not is_writable(shared / "sskd_head" / "x")
    finally:
        shared.chmod(0o755)
