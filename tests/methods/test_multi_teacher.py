"""Several teachers (``teachers:``): terms read one by key or index, or the weighted mean of their logits;
every teacher is frozen, re-normalised on its own, cached on its own, and single-teacher runs are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdlab.cache import TeacherCache, build_caches_from_config
from kdlab.cli.main import main
from kdlab.config import ConfigError, flatten_config, load_config, to_dict
from kdlab.config.teacher_source import teacher_weights
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.run_state import config_differences
from kdlab.engine.teacher import FrozenTeacher, TeacherSet, build_teachers
from kdlab.engine.trainer import Trainer
from kdlab.losses import kd_loss
from kdlab.methods.build import build_distiller
from kdlab.models import create_model

from method_helpers import make_batch, tiny_student

#: the demo data (the embedded 8x8 digits: 1 channel, 10 classes), 64 training images, 4 steps an epoch
DIGITS = [
    "data.name=digits",
    "data.subset=64",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.device=cpu",
    "trainer.progress=none",
    "trainer.epochs=2",
    "optim.lr=0.05",
    "schedule.name=constant",
]
CLASSES, IMAGE = 5, 8


def _write(path: Path, name: str, seed: int, classes: int = 10) -> Path:
    torch.manual_seed(seed)
    torch.save(create_model(name, num_classes=classes, in_chans=1).state_dict(), path)
    return path


@pytest.fixture
def digits(tmp_path: Path) -> dict:
    """Two differently shaped teachers of the digits (resnet8 'small', wrn_16_2 'wide' with its own statistics)."""
    small, wide = _write(tmp_path / "small.pt", "resnet8", 0), _write(tmp_path / "wide.pt", "wrn_16_2", 1)
    teachers = (f"teachers={{small: {{name: resnet8, checkpoint: {small}, weight: 1}}, "
                f"wide: {{name: wrn_16_2, checkpoint: {wide}, weight: 3, mean: [0.4], std: [0.3]}}}}")
    overrides = [*DIGITS, f"data.cache_dir={tmp_path / 'data-cache'}", teachers]
    empty = tmp_path / "empty.yaml"  # the CLI reads a config file, then the overrides
    empty.write_text("{}\n")
    return {"root": tmp_path, "overrides": overrides, "small": small, "wide": wide, "config": str(empty)}


def _cfg(setup: dict, *extra: str):
    return load_config(None, [*setup["overrides"], *extra])


def _terms(*terms: str) -> str:
    return f"distill.terms=[{', '.join(terms)}]"


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ selection and the mean (no files)
def _tiny_set(weights: tuple[float, float] = (1.0, 3.0)) -> TeacherSet:
    torch.manual_seed(2)
    a = FrozenTeacher(create_model("resnet8", num_classes=CLASSES))
    torch.manual_seed(3)
    b = FrozenTeacher(create_model("wrn_16_2", num_classes=CLASSES))
    return TeacherSet({"a": a, "b": b}, {"a": weights[0], "b": weights[1]})


def _tiny_config(*terms: str, weights: str = "weight: 1", other: str = "weight: 3"):
    teachers = f"teachers={{a: {{name: resnet8, checkpoint: a.pt, {weights}}}, b: {{name: wrn_16_2, checkpoint: b.pt, {other}}}}}"
    return load_config(None, [teachers, _terms(*terms)])


def _tiny_distiller(cfg, teachers: TeacherSet):
    return build_distiller(cfg, tiny_student(), teachers, num_classes=CLASSES, train_size=40, image_size=IMAGE,
                           in_chans=3, steps_per_epoch=5, device=torch.device("cpu"))


def test_terms_read_the_teacher_they_name_by_key_by_index_or_the_weighted_mean():
    cfg = _tiny_config(
        "{name: kd, key: kd_a, teacher: a}", "{name: kd, key: kd_b, teacher: b}", "{name: kd, key: kd_1, teacher: 1}",
        "{name: kd, key: kd_mean, teacher: mean}",
    )
    teachers = _tiny_set()
    distiller = _tiny_distiller(cfg, teachers)
    batch = make_batch(classes=CLASSES)
    out = distiller(batch)
    with torch.no_grad():
        student = distiller.student(batch["image"])
        logits_a, logits_b = teachers["a"](batch["image"]), teachers["b"](batch["image"])
    mean = 0.25 * logits_a + 0.75 * logits_b  # weights 1 and 3, normalised to sum 1
    expected = {"kd_a": logits_a, "kd_b": logits_b, "kd_1": logits_b, "kd_mean": mean}
    for key, teacher_logits in expected.items():
        torch.testing.assert_close(out.terms[key], kd_loss(student, teacher_logits, temperature=4.0), msg=key)
    assert not torch.allclose(out.terms["kd_a"], out.terms["kd_b"])
    assert distiller.sources == {"kd_a": "a", "kd_b": "b", "kd_1": "b", "kd_mean": "mean"}


def test_weights_default_to_equal_shares_and_a_zero_weight_leaves_a_teacher_out_of_the_mean():
    cfg = _tiny_config("{name: kd, teacher: mean}", weights="num_classes: 5", other="num_classes: 5")
    assert teacher_weights(cfg) == {"a": 0.5, "b": 0.5}
    zero = _tiny_config("{name: kd, teacher: mean}", "{name: kd, key: kd_b, teacher: b}", weights="weight: 2",
                        other="weight: 0")
    teachers = _tiny_set((2.0, 0.0))
    assert teachers.mean_keys == ("a",)
    distiller = _tiny_distiller(zero, teachers)
    batch = make_batch(classes=CLASSES)
    with torch.no_grad():
        student, logits_a = distiller.student(batch["image"]), teachers["a"](batch["image"])
    torch.testing.assert_close(distiller(batch).terms["kd"], kd_loss(student, logits_a, temperature=4.0))


def test_each_term_builds_with_its_own_teacher_as_build_context_teacher():
    """fitnet sizes its regressor from its teacher's probe: none for resnet8 (the student's shapes), one for wrn."""
    cfg = _tiny_config("{name: fitnet, key: fit_a, teacher: a}", "{name: fitnet, key: fit_b, teacher: b}")
    distiller = _tiny_distiller(cfg, _tiny_set())
    assert isinstance(distiller.terms["fit_a"].regressor, torch.nn.Identity)
    assert not isinstance(distiller.terms["fit_b"].regressor, torch.nn.Identity)
    out = distiller(make_batch(classes=CLASSES))
    assert torch.isfinite(out.terms["fit_b"]) and torch.isfinite(out.terms["fit_a"])


def test_only_the_teachers_terms_read_run_once_per_batch_and_features_only_where_needed():
    cfg = _tiny_config("{name: kd, teacher: mean}", "{name: fitnet, teacher: b}")
    teachers = _tiny_set()
    distiller = _tiny_distiller(cfg, teachers)
    calls: list[tuple[str, str]] = []
    for key, member in teachers.items():
        for method in ("forward", "forward_all"):
            original = getattr(member, method)
            setattr(member, method, lambda x, _o=original, _c=(key, method): (calls.append(_c), _o(x))[1])
    distiller(make_batch(classes=CLASSES))
    assert sorted(calls) == [("a", "forward"), ("b", "forward_all")]


def test_a_distiller_state_holds_no_teacher_and_teachers_move_with_it():
    cfg = _tiny_config("{name: kd, teacher: mean}")
    teachers = _tiny_set()
    distiller = _tiny_distiller(cfg, teachers)
    assert all(k.startswith("student.") for k in distiller.state_dict())
    distiller.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in teachers.parameters())
    distiller.train()
    assert not teachers.training and not any(m.training for m in teachers.modules())


# ------------------------------------------------------------------ bad configs: one line each
@pytest.mark.parametrize(
    "terms, message",
    [
        (["{name: kd, teacher: wid}"], r"distill\.terms\[0\] \(kd\)\.teacher='wid' is not a teacher key \(did you mean wide\?\)"),
        (["{name: kd, teacher: 2}"], r"teacher=2 is out of range: this run has 2 teachers \(0\.\.1: small, wide\)"),
        (["{name: kd, teacher: small}", "{name: fitnet, teacher: mean}"],
         r"distill\.terms\[1\] \(fitnet\)\.teacher=mean: the mean is of the teachers' logits, but term fitnet reads"),
        (["{name: kd}"], r"distill\.terms\[0\] \(kd\) reads a teacher and this run has 2 \(teachers: small, wide\): choose"),
        (["{name: ce, teacher: 0}", "{name: kd, teacher: mean}"], r"term ce reads no teacher"),
        (["{name: kd, teacher: small}"], r"teachers\.wide is read by no loss term"),
        (["{name: kd, teacher: [0, 1]}"], r"teacher must be a teacher key, an index or mean"),
    ],
)
def test_bad_teacher_choices_are_one_clear_line(digits, terms, message):
    cfg = _cfg(digits, "trainer.out_dir=" + str(digits["root"] / "bad"), _terms(*terms))
    with pytest.raises(ConfigError, match=message) as caught:
        Trainer(cfg)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["teachers={a: {name: resnet8}}", "teacher.name=resnet8"], r"teacher\.name and teachers are both set"),
        (["teachers=[{name: resnet8, checkpoint: a}, {name: resnet8, checkpoint: b}]"],
         r"teachers\[1\]: teacher key 'resnet8' is used twice"),
        (["teachers={mean: {name: resnet8}}"], r"the teacher key 'mean' is taken"),
        (["teachers={a: {name: resnet8, chekpoint: x}}"], r"teachers\.a\.chekpoint: not a teacher key \(did you mean checkpoint\?\)"),
        (["teachers={a: {name: resnet8, weight: 1}, b: {name: wrn_16_2}}"], r"weight is set for some teachers but not for b"),
        (["teachers={a: {name: resnet8}}", "task=detection"], r"several teachers are for task: classification"),
        (["distill.terms=[{name: kd, teacher: 0}]"], r"selects one of several teachers, but this run has one"),
    ],
)
def test_bad_teacher_configs_are_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        cfg = load_config(None, overrides)
        from kdlab.methods.build import term_specs

        term_specs(cfg)
    assert "\n" not in str(caught.value)


def test_a_teacher_with_other_classes_is_refused_for_logit_terms(digits, tmp_path: Path):
    other = _write(tmp_path / "other.pt", "resnet8", 2, classes=7)
    cfg = _cfg(digits, f"teachers.wide.checkpoint={other}", "teachers.wide.name=resnet8", "teachers.wide.num_classes=7",
               f"trainer.out_dir={tmp_path / 'run'}", _terms("{name: kd, teacher: mean}"))
    with pytest.raises(ConfigError, match=r"teachers\.wide has 7 classes but the student has 10: logit-based terms "
                                          r"\['kd'\] need the same classes"):
        Trainer(cfg)


def test_a_missing_teacher_file_names_the_teacher(digits, tmp_path: Path):
    cfg = _cfg(digits, f"teachers.wide.checkpoint={tmp_path / 'nope.pt'}", f"trainer.out_dir={tmp_path / 'run'}",
               _terms("{name: kd, teacher: mean}"))
    with pytest.raises(ConfigError, match=r"^teachers\.wide: .*nope\.pt: file not found"):
        Trainer(cfg)


def test_a_term_prerequisite_is_derived_from_its_own_teacher(digits):
    """SSKD's head (a run before training) is that of the teacher the sskd term selects, as if it were alone."""
    from kdlab.methods.build import prerequisites

    cfg = _cfg(digits, _terms("{name: sskd, teacher: wide}", "{name: kd, teacher: small}"))
    (need,) = prerequisites(cfg)
    assert need.config.model.name == "wrn_16_2" and need.config.model.checkpoint == str(digits["wide"].resolve())
    assert need.config.data.mean == [0.4] and need.config.data.std == [0.3]  # the wide teacher's own statistics


# ------------------------------------------------------------------ frozen, re-normalised, resumable
def test_each_teacher_gets_its_own_input_renormalisation(digits):
    cfg = _cfg(digits)
    teachers = build_teachers(cfg, 10, 1, [0.5], [0.25])
    x = torch.randn(4, 1, 8, 8)
    small, wide = teachers["small"], teachers["wide"]
    assert small.scale is None  # no teacher.mean/std: the data's statistics as they are
    renormalised = (x * 0.25 + 0.5 - 0.4) / 0.3
    with torch.no_grad():
        torch.testing.assert_close(wide(x), wide.model(renormalised), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(small(x), small.model(x), rtol=1e-4, atol=1e-5)


def test_every_teacher_stays_frozen_through_training(digits):
    cfg = _cfg(digits, f"trainer.out_dir={digits['root'] / 'run'}",
               _terms("{name: ce}", "{name: kd, teacher: mean}", "{name: fitnet, teacher: wide}"))
    trainer = Trainer(cfg)
    before = {key: {k: v.clone() for k, v in member.model.state_dict().items()} for key, member in trainer.teacher.items()}
    trainer.fit()
    for key, member in trainer.teacher.items():
        assert not member.training and not member.model.training, key
        assert all(not p.requires_grad and p.grad is None for p in member.parameters()), key
        after = member.model.state_dict()
        assert all(torch.equal(value, after[name]) for name, value in before[key].items()), key  # BN stats too
    saved = load_checkpoint_file(trainer.out_dir / "checkpoints" / "last.pt")
    assert not any("teacher" in k for k in [*saved["model"], *saved["method"]])


def test_resume_mid_epoch_with_two_teachers_is_bitwise_exact(digits):
    terms = _terms("{name: ce, weight: 0.1}", "{name: kd, weight: 0.9, teacher: mean}", "{name: at, teacher: 1}")

    def run(name: str, *extra: str, resume=None):
        return Trainer(_cfg(digits, f"trainer.out_dir={digits['root'] / name}", terms, *extra)).fit(resume=resume)

    full = run("full")
    assert not run("cut", "trainer.stop_after_steps=5").completed  # in the middle of epoch 1
    assert run("cut", resume="auto").completed
    a = load_checkpoint_file(full.out_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint_file(digits["root"] / "cut" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ one cache per teacher
def test_per_teacher_caches_are_built_reused_and_give_the_live_losses(digits):
    root = digits["root"]
    terms = _terms("{name: ce, weight: 0.1}", "{name: kd, teacher: mean}", "{name: kd, key: kd_small, teacher: small}")
    exact = "distill.teacher_cache_dtype=float32"
    Trainer(_cfg(digits, f"trainer.out_dir={root / 'live'}", terms)).fit()
    Trainer(_cfg(digits, f"trainer.out_dir={root / 'cached'}", terms, exact,
                 f"distill.teacher_cache={root / 'cache'}")).fit()
    small, wide = TeacherCache(root / "cache" / "small"), TeacherCache(root / "cache" / "wide")
    assert small.key["teacher"]["name"] == "resnet8" and wide.key["teacher"]["name"] == "wrn_16_2"
    assert wide.key["teacher"]["mean"] == [0.4] and small.key["teacher"]["checkpoint_sha256"] != \
        wide.key["teacher"]["checkpoint_sha256"]
    assert _rows(root / "live") == [dict(r, seconds=l["seconds"]) for r, l in
                                    zip(_rows(root / "cached"), _rows(root / "live"))]
    caches, live = build_caches_from_config(_cfg(digits, terms, exact), root / "cache", progress=False)
    assert set(caches) == {"small", "wide"} and not any(built for _, built in caches.values()) and live == {}


def test_a_teacher_a_feature_term_reads_stays_live_beside_a_cached_one(digits):
    root = digits["root"]
    terms = _terms("{name: ce, weight: 0.1}", "{name: kd, key: kd_small, teacher: small}", "{name: at, teacher: wide}")
    exact = "distill.teacher_cache_dtype=float32"
    Trainer(_cfg(digits, f"trainer.out_dir={root / 'live'}", terms)).fit()
    Trainer(_cfg(digits, f"trainer.out_dir={root / 'mixed'}", terms, exact,
                 f"distill.teacher_cache={root / 'cache'}")).fit()
    assert (root / "cache" / "small").is_dir() and not (root / "cache" / "wide").exists()
    assert [r["train_loss"] for r in _rows(root / "live")] == [r["train_loss"] for r in _rows(root / "mixed")]


def test_cache_teacher_builds_one_cache_per_teacher(digits, capsys):
    root = digits["root"]
    terms = _terms("{name: kd, teacher: mean}", "{name: fitnet, teacher: wide}")
    args = ["cache-teacher", digits["config"], "--out", str(root / "c"), "--epochs", "1", *digits["overrides"], terms]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"small: teacher cache {root / 'c' / 'small'} (built)")
    assert lines[1].startswith("wide: no cache, runs live (loss term(s) fitnet")
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["teachers"]) == {"small"} and not summary["teachers"]["small"]["built"]
    assert summary["live"] == {"wide": ["fitnet"]}


def test_a_single_teacher_cache_folder_is_refused_for_several_teachers(digits, tmp_path: Path):
    single = [*DIGITS, f"data.cache_dir={tmp_path / 'data-cache'}", "teacher.name=resnet8",
              f"teacher.checkpoint={digits['small']}", _terms("{name: kd}")]
    assert main(["cache-teacher", digits["config"], "--out", str(tmp_path / "one"), "--epochs", "1", *single]) == 0
    cfg = _cfg(digits, f"trainer.out_dir={tmp_path / 'run'}", _terms("{name: kd, teacher: mean}"),
               f"distill.teacher_cache={tmp_path / 'one'}")
    with pytest.raises(ConfigError, match=r"is one teacher's cache, but this run has several teachers"):
        Trainer(cfg)


# ------------------------------------------------------------------ single-teacher runs as before
def test_a_single_teacher_config_flattens_and_resumes_as_before_the_key_existed():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "cifar100" / "kd" / "resnet32x4_resnet8x4.yaml")
    assert cfg.teachers == {}
    flat = flatten_config(to_dict(cfg))
    assert not any(k.startswith("teachers") for k in flat)  # SSKD's head digest, cache keys, resume checks unchanged
    old = to_dict(cfg)
    del old["teachers"]  # a checkpoint written before teachers existed
    assert config_differences(old, to_dict(cfg)) == []


def test_a_list_and_a_mapping_of_teachers_are_the_same_config():
    as_list = load_config(None, ["teachers=[{name: resnet8, checkpoint: a.pt, weight: 1}, "
                                 "{key: wide, name: wrn_16_2, checkpoint: b.pt, weight: 2}]"])
    as_mapping = load_config(None, ["teachers={resnet8: {name: resnet8, checkpoint: a.pt, weight: 1}, "
                                    "wide: {name: wrn_16_2, checkpoint: b.pt, weight: 2}}"])
    assert as_list == as_mapping and list(as_list.teachers) == ["resnet8", "wide"]
    assert teacher_weights(as_list) == pytest.approx({"resnet8": 1 / 3, "wide": 2 / 3})
