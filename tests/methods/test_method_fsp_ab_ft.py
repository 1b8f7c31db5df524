"""FSP, AB and FT through the real trainer on tiny synthetic data: the initialisation stage runs first (as a
prerequisite), once, and is reused; the main run starts from what it trained, resumes without it, and the
teacher stays frozen."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from kdlab.config import ConfigError, load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer
from kdlab.losses import fsp_loss
from kdlab.methods.build import prerequisites
from kdlab.methods.init_stage import FSPInitTerm, ft_init_lr
from kdlab.methods import prerequisite_place
from kdlab.models import create_model

TINY = [
    "data.name=synthetic",
    "data.synthetic_train=32",
    "data.synthetic_test=16",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.progress=none",
    "trainer.device=cpu",
    "trainer.epochs=1",
]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight teacher files (the mechanics do not need trained ones), one folder each."""
    root = tmp_path_factory.mktemp("teachers")
    files = {}
    for seed, arch in enumerate(("resnet8", "wrn_16_2")):
        torch.manual_seed(10 + seed)
        path = root / arch / "ckpt.pth"
        path.parent.mkdir()
        torch.save({"model": create_model(arch, num_classes=4).state_dict()}, path)
        files[arch] = path
    return files


def config(teacher: Path, arch: str, out: Path, term: str, *extra: str, student: str = "resnet8"):
    return load_config(None, [
        *TINY, f"model.name={student}", f"teacher.name={arch}", f"teacher.checkpoint={teacher}",
        f"trainer.out_dir={out}", f"distill.terms=[{{name: ce}}, {term}]", *extra,
    ])


def count_teacher_forwards(trainer: Trainer) -> list[int]:
    calls = [0]
    teacher = trainer.teacher
    for method in ("forward", "forward_all"):
        original = getattr(teacher, method)

        def counted(x, _original=original):
            calls[0] += 1
            return _original(x)

        setattr(teacher, method, counted)
    return calls


def state(path: Path, part: str = "model") -> dict[str, torch.Tensor]:
    return load_checkpoint_file(path)[part]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def teacher_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


# ------------------------------------------------------------------------------------------------- FSP
FSP = "{name: fsp, weight: 0, init_epochs: 1}"


@pytest.fixture(scope="module")
def fsp_run(teachers: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("fsp")
    cfg = config(teachers["resnet8"], "resnet8", out / "main", FSP)
    (need,) = prerequisites(cfg)
    assert not need.produces.exists()
    trainer = Trainer(cfg)  # builds: runs the initialisation stage first
    start = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    calls = count_teacher_forwards(trainer)
    assert trainer.fit().completed
    return {"cfg": cfg, "need": need, "trainer": trainer, "start": start, "calls": calls, "out": out}


def test_fsp_init_stage_runs_first_with_repdistillers_settings(fsp_run, teachers):
    need = fsp_run["need"]
    assert need.produces.exists() and json.loads(need.produces.read_text())["completed"]
    assert need.produces.parent.parent == teachers["resnet8"].parent / "fsp_init"  # beside the teacher
    init = need.config
    assert init.distill.terms == [{"name": "fsp_init", "stem": True}]
    assert (init.optim.name, init.optim.lr, init.optim.momentum, init.optim.weight_decay) == ("sgd", 0.05, 0.9, 5e-4)
    assert init.schedule.name == "constant" and init.trainer.epochs == 1
    assert init.trainer.seed == fsp_run["cfg"].trainer.seed and init.model.name == "resnet8"
    assert not init.teacher.fold_batchnorm  # its stem is read by a hook on the network itself
    rows = [json.loads(line) for line in (need.produces.parent / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_fsp_init"] > 0


def test_fsp_main_run_starts_from_the_init_student_and_runs_no_teacher(fsp_run, teachers):
    init_student = state(fsp_run["need"].produces.parent / "checkpoints" / "last.pt")
    assert same(fsp_run["start"], init_student)
    trainer = fsp_run["trainer"]
    assert trainer.method.terms["fsp"].init_only and fsp_run["calls"] == [0]
    rows = [json.loads(line) for line in (trainer.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_fsp"] == 0.0 and rows[-1]["train_ce"] > 0
    teacher_now = {k.removeprefix("model."): v for k, v in trainer.teacher.state_dict().items()}
    assert same(teacher_now, teacher_weights(teachers["resnet8"]))


def test_fsp_second_run_and_resume_reuse_the_init_stage(fsp_run, teachers):
    final = fsp_run["need"].produces
    stamp = final.stat().st_mtime_ns
    term = FSP
    cut = config(teachers["resnet8"], "resnet8", fsp_run["out"] / "cut", term)
    stopped = dataclasses.replace(cut, trainer=dataclasses.replace(cut.trainer, stop_after_steps=1))
    assert not Trainer(stopped).fit().completed
    assert Trainer(cut).fit(resume="auto").completed
    assert final.stat().st_mtime_ns == stamp
    full, resumed = fsp_run["trainer"].out_dir, fsp_run["out"] / "cut"
    assert same(state(full / "checkpoints" / "last.pt"), state(resumed / "checkpoints" / "last.pt"))
    (again,) = prerequisites(cut)
    assert again.produces == final


def test_fsp_init_loss_pairs_the_stem_with_the_stages(fsp_run, teachers):
    cfg = fsp_run["need"].config
    trainer = Trainer(dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, out_dir="unused")))
    method = trainer.method.eval()  # eval mode: the stems below are recomputed with the running statistics
    term = method.terms["fsp_init"]
    assert isinstance(term, FSPInitTerm)
    images = torch.randn(4, 3, 8, 8)
    value = method({"image": images, "target": torch.zeros(4, dtype=torch.long), "index": torch.arange(4)})
    student, teacher = method.student, trainer.teacher.model
    with torch.no_grad():
        maps = [torch.relu(net.bn1(net.conv1(images))) for net in (student, teacher)]
        expected = fsp_loss([maps[0], *student.forward_all(images).stages],
                            [maps[1], *teacher.forward_all(images).stages])
    torch.testing.assert_close(value.terms["fsp_init"], expected)


def test_fsp_with_unequal_channels_names_the_maps_and_channels(teachers, tmp_path: Path):
    cfg = config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "x", FSP)
    with pytest.raises(ConfigError, match=r"fsp:.*stem 16, stage 0 16.*stage 0 32.*unequal at stage 0 \(16 vs 32\)"):
        Trainer(cfg)
    assert not (teachers["wrn_16_2"].parent / "fsp_init").exists()  # refused before anything trained


def test_fsp_main_stage_loss_needs_an_unfolded_teacher(fsp_run, teachers, tmp_path: Path):
    term = "{name: fsp, weight: 2, init_epochs: 1}"
    with pytest.raises(ConfigError, match="teacher.fold_batchnorm: false"):
        Trainer(config(teachers["resnet8"], "resnet8", tmp_path / "folded", term))
    trainer = Trainer(config(teachers["resnet8"], "resnet8", tmp_path / "unfolded", term,
                             "teacher.fold_batchnorm=false"))
    calls = count_teacher_forwards(trainer)
    assert not trainer.method.terms["fsp"].init_only and trainer.fit().completed and calls[0] > 0
    rows = [json.loads(line) for line in (tmp_path / "unfolded" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_fsp"] > 0


# -------------------------------------------------------------------------------------------------- AB
def test_ab_init_trains_student_and_connectors_and_the_main_run_starts_from_them(teachers, tmp_path: Path):
    cfg = config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "main", "{name: ab, weight: 0, init_epochs: 1}")
    (need,) = prerequisites(cfg)
    assert need.config.distill.terms == [{"name": "ab_init", "stages": "all", "margin": 1.0}]
    assert need.config.teacher.fold_batchnorm  # no stem to read
    trainer = Trainer(cfg)
    init = load_checkpoint_file(need.produces.parent / "checkpoints" / "last.pt")
    assert same(trainer.student.state_dict(), init["model"])
    assert any(k.startswith("terms.ab_init.connectors.0.body.0") for k in init["method"])  # 16 -> 32 channels
    rows = [json.loads(line) for line in (need.produces.parent / "metrics.jsonl").read_text().splitlines()]
    assert {"train_ab_init/agree_0", "train_ab_init/agree_1", "train_ab_init/agree_2"} <= set(rows[-1])
    calls = count_teacher_forwards(trainer)
    assert trainer.fit().completed and calls == [0]
    assert not any(True for _ in trainer.method.terms["ab"].parameters())

    # weight > 0: the AB loss in the main stage too, connectors continued from the init stage
    stamp = need.produces.stat().st_mtime_ns
    joint_term = "{name: ab, weight: 1, init_epochs: 1}"
    joint = Trainer(config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "joint", joint_term))
    assert need.produces.stat().st_mtime_ns == stamp  # the same stage: the weight is the main stage's
    connectors = joint.method.terms["ab"].connectors
    prefix = "terms.ab_init.connectors."
    trained = {k[len(prefix):]: v for k, v in init["method"].items() if k.startswith(prefix)}
    assert same(connectors.state_dict(), trained)
    trainable = {id(p) for group in joint.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in connectors.parameters()} <= trainable
    assert joint.fit().completed


# -------------------------------------------------------------------------------------------------- FT
def test_ft_trains_the_paraphraser_on_the_frozen_teacher_and_loads_it_frozen(teachers, tmp_path: Path):
    cfg = config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "main", "{name: ft, weight: 200, init_epochs: 1}")
    (need,) = prerequisites(cfg)
    init = need.config
    assert init.model.frozen and init.model.name == "wrn_16_2" and init.teacher.checkpoint is None
    assert init.optim.lr == 0.01 and init.trainer.seed == 0  # RepDistiller's lr for a resnet student
    trainer = Trainer(cfg)
    saved = load_checkpoint_file(need.produces.parent / "checkpoints" / "last.pt")
    frozen_model = {k.removeprefix("model."): v for k, v in saved["model"].items()}
    assert same(frozen_model, teacher_weights(teachers["wrn_16_2"]))  # the init stage left the teacher alone
    term = trainer.method.terms["ft"]
    prefix = "terms.ft_init.paraphraser."
    paraphraser = {k[len(prefix):]: v for k, v in saved["method"].items() if k.startswith(prefix)}
    assert paraphraser and same(term.paraphraser.state_dict(), paraphraser)
    translator_before = {k: v.clone() for k, v in term.translator.state_dict().items()}
    calls = count_teacher_forwards(trainer)
    assert trainer.fit().completed and calls[0] > 0
    assert same(term.paraphraser.state_dict(), paraphraser) and not term.paraphraser.training
    assert not any(p.requires_grad for p in term.paraphraser.parameters())
    assert not same(term.translator.state_dict(), translator_before)
    teacher_now = {k.removeprefix("model."): v for k, v in trainer.teacher.state_dict().items()}
    assert same(teacher_now, teacher_weights(teachers["wrn_16_2"]))

    # another student seed shares the paraphraser; other init settings get their own
    (other_seed,) = prerequisites(config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "s1",
                                         "{name: ft, weight: 200, init_epochs: 1}", "trainer.seed=1"))
    assert other_seed.produces == need.produces
    (other_lr,) = prerequisites(config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "lr",
                                       "{name: ft, weight: 200, init_epochs: 1, init_lr: 0.02}"))
    assert other_lr.produces != need.produces and other_lr.config.optim.lr == 0.02


def test_ft_init_lr_follows_repdistiller(teachers, tmp_path: Path):
    from kdlab.methods.init_stage import InitSettings

    for student, lr in (("resnet8", 0.01), ("wrn_16_2", 0.01), ("vgg8", 0.05)):
        cfg = config(teachers["resnet8"], "resnet8", tmp_path, "{name: ft}", student=student)
        assert ft_init_lr(cfg, InitSettings()) == lr
    cfg = config(teachers["resnet8"], "resnet8", tmp_path, "{name: ab}", "optim.lr=0.01")
    (need,) = prerequisites(cfg)
    assert need.config.optim.lr == 0.01  # FSP / AB: the main learning rate


# --------------------------------------------------------------------------------- settings, placement
@pytest.mark.parametrize("term, needle", [
    ("{name: fsp, init_epochs: 0}", "init_epochs=0"),
    ("{name: ab, init_lr: -1}", "init_lr=-1"),
    ("{name: ft, init_lr: true}", "init_lr=True"),
    ("{name: fsp, stem: 'yes'}", "stem='yes'"),
    ("{name: ab, margin: -1}", "margin=-1"),
    ("{name: ft, rate: 1.5}", "rate=1.5"),
])
def test_bad_settings_name_the_term_and_parameter(teachers, tmp_path: Path, term: str, needle: str):
    cfg = config(teachers["resnet8"], "resnet8", tmp_path, term)
    with pytest.raises(ConfigError, match=rf"distill.terms \((fsp|ab|ft)\): {needle}"):
        prerequisites(cfg)


def test_bad_loss_powers_name_the_parameter(teachers, tmp_path: Path):
    cfg = config(teachers["resnet8"], "resnet8", tmp_path / "p", "{name: ft, init_epochs: 1, p2: 3}")
    with pytest.raises(ConfigError, match=r"distill.terms\[1\] \(ft\): .*p2 must be 1"):
        Trainer(cfg)


def test_digest_ignores_paths_and_label_noise_but_not_the_seed(teachers, tmp_path: Path):
    def need(*extra: str):
        return prerequisites(config(teachers["resnet8"], "resnet8", tmp_path / "x", "{name: fsp}", *extra))[0]

    base = need()
    assert need("trainer.out_dir=elsewhere", "data.num_workers=1", "trainer.epochs=9").produces == base.produces
    assert need("data.label_noise.rate=0.3").produces == base.produces  # the stage reads no labels
    assert base.config.data.label_noise.rate is None
    assert need("trainer.seed=1").produces != base.produces  # FSP / AB: the student's initial weights
    assert need("data.batch_size=8").produces != base.produces


def test_read_only_teacher_folder_falls_back_to_the_user_cache(teachers, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KDLAB_CACHE_DIR", str(tmp_path / "cache"))
    teacher_dir = teachers["resnet8"].parent.resolve()
    monkeypatch.setattr(prerequisite_place, "is_writable", lambda path: teacher_dir not in Path(path).resolve().parents)
    (need,) = prerequisites(config(teachers["resnet8"], "resnet8", tmp_path, "{name: ab, init_epochs: 3}"))
    assert need.produces.parent.parent == tmp_path / "cache" / "ab_init"


def test_an_interrupted_init_stage_is_resumed_exactly(teachers, tmp_path: Path):
    cfg = config(teachers["wrn_16_2"], "wrn_16_2", tmp_path / "main", "{name: ab, weight: 0, init_epochs: 2}")
    (need,) = prerequisites(cfg)
    stopped = dataclasses.replace(need.config, trainer=dataclasses.replace(need.config.trainer, stop_after_steps=3))
    assert not Trainer(stopped).fit().completed and not need.produces.exists()
    Trainer(cfg)  # the trainer resumes the stage (auto) before building the main run
    assert need.produces.exists()
    elsewhere = dataclasses.replace(need.config, trainer=dataclasses.replace(need.config.trainer,
                                                                             out_dir=str(tmp_path / "uncut")))
    assert Trainer(elsewhere).fit().completed
    for part in ("model", "method"):
        assert same(state(need.produces.parent / "checkpoints" / "last.pt", part),
                    state(tmp_path / "uncut" / "checkpoints" / "last.pt", part))


def test_building_without_the_stage_says_it_has_not_run(teachers, tmp_path: Path):
    from kdlab.engine.teacher import FrozenTeacher
    from kdlab.methods.build import build_distiller

    cfg = config(teachers["resnet8"], "resnet8", tmp_path, "{name: ft, init_epochs: 7}")
    with pytest.raises(ConfigError, match=r"distill.terms\[1\] \(ft\): ft: its initialisation stage has not run yet"):
        build_distiller(cfg, create_model("resnet8", num_classes=4),
                        FrozenTeacher(create_model("resnet8", num_classes=4)), num_classes=4, train_size=32,
                        image_size=8, in_chans=3, steps_per_epoch=2, device=torch.device("cpu"))


def test_the_suite_runs_every_seeds_init_stage_in_one_prerequisite_task(teachers, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    """FSP's stage trains the student, so each seed has its own; the suite's task runs them all, once each."""
    from kdlab.benchmarks.suite_runs import PlannedRun, task_prerequisites

    monkeypatch.setenv("KDLAB_CACHE_DIR", str(tmp_path / "cache"))
    teacher = tmp_path / "teacher" / "ckpt.pth"  # a folder of its own: no stage from the other tests beside it
    teacher.parent.mkdir()
    shutil.copy(teachers["resnet8"], teacher)
    base = [*TINY, "model.name=resnet8", "teacher.name=resnet8", f"teacher.checkpoint={teacher}",
            "distill.terms=[{name: ce}, {name: fsp, weight: 0, init_epochs: 1}]"]
    runs = [PlannedRun("fsp", seed, None, tmp_path / f"seed{seed}", (*base, f"trainer.seed={seed}",
                                                                    f"trainer.out_dir={tmp_path / f'seed{seed}'}"))
            for seed in (0, 1, 0)]
    done = task_prerequisites(*runs)
    assert done["ran"] == [done["ran"][0]] and done["ran"][0].endswith("x2 (one per seed)")
    needs = [need for run in runs[:2] for need in prerequisites(run.load())]
    assert len({need.produces for need in needs}) == 2 and all(need.produces.exists() for need in needs)
    assert task_prerequisites(*runs)["ran"] == []  # finished stages are not trained again
