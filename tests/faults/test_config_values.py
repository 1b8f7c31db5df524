"""Config values that type-check but cannot work are refused when the config is loaded (issue 21, config).

Each case goes through the command line (``kdlab print-config`` / ``kdlab train`` in-process): exit
code 2 and exactly one line on stderr, ``kdlab <cmd>: error: ...``, naming the key (or the file) and
the value. ``train`` never gets as far as building a Trainer (the ``no_training`` fixture fails the
test if it does). Legit neighbours of each value still load.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml
from _fault_helpers import no_training  # noqa: F401 - a fixture

from kdlab.cli.main import main
from kdlab.config import ConfigError, load_config
from kdlab.config.durations import parse_duration
from kdlab.config.yaml_reading import MAX_ALIAS_EXPANSION, alias_expansion, parse_yaml
from kdlab.engine.timelimit import parse_duration as engine_parse_duration

REPO = Path(__file__).resolve().parents[2]
STUDENT = str(REPO / "configs" / "demo" / "student.yaml")


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one stderr line of a command that must exit 2."""
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"kdlab {argv[0]}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def accepted(capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    capsys.readouterr()
    code = main(["print-config", STUDENT, *overrides])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", (overrides, code, err)
    return out


def printed(capsys: pytest.CaptureFixture[str], *overrides: str) -> dict:
    return yaml.safe_load(accepted(capsys, *overrides))


# 1. trainer.time_limit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["banana", "-3h", "0s", "0", "inf", ".inf", "''", "3h-5m", "1e999", "9" * 400])
def test_1_time_limit_must_be_a_positive_finite_duration(capsys, no_training, tmp_path, value):
    line = refused(capsys, "train", STUDENT, f"trainer.out_dir={tmp_path}", f"trainer.time_limit={value}")
    assert "trainer.time_limit=" in line


def test_1_time_limit_names_the_value(capsys):
    assert "'banana'" in refused(capsys, "print-config", STUDENT, "trainer.time_limit=banana")
    assert "> 0" in refused(capsys, "print-config", STUDENT, "trainer.time_limit=-3h")
    assert "empty" in refused(capsys, "print-config", STUDENT, "trainer.time_limit=''")


def test_1_legit_time_limits_still_load(capsys):
    for value, seconds in (("3h50m", 13800.0), ("90m", 5400.0), ("45s", 45.0), ("120", 120.0), ("1.5h", 5400.0)):
        assert printed(capsys, f"trainer.time_limit={value}")["trainer"]["time_limit"] == value
        assert parse_duration(value) == seconds
    assert printed(capsys, "trainer.time_limit=null")["trainer"]["time_limit"] is None


def test_1_engine_keeps_its_parse_duration():
    assert engine_parse_duration is parse_duration
    with pytest.raises(ValueError, match="trainer.time_limit"):
        engine_parse_duration("soon")


# 2. integers bounded ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["trainer.seed=99999999999999999999", "trainer.seed=4294967296",
                                      "data.label_noise.seed=4294967296"])
def test_2_seeds_fit_numpy_and_torch(capsys, no_training, tmp_path, override):
    key = override.split("=")[0]
    line = refused(capsys, "train", STUDENT, f"trainer.out_dir={tmp_path}", override)
    assert f"{key}=" in line and "4294967295" in line


@pytest.mark.parametrize("key", ["trainer.epochs", "data.batch_size", "data.subset", "distill.head_hidden",
                                 "trainer.stop_after_steps", "schedule.milestones", "data.per_class"])
def test_2_every_integer_fits_in_64_bits(capsys, key):
    value = f"[{2**63}]" if key == "schedule.milestones" else str(2**63)
    line = refused(capsys, "print-config", STUDENT, f"{key}={value}")
    assert key in line and str(2**63 - 1) in line


def test_2_a_huge_integer_is_shown_short(capsys):
    line = refused(capsys, "print-config", STUDENT, f"trainer.epochs={10**400}")
    assert "trainer.epochs" in line and len(line) < 200


def test_2_legit_integers_still_load(capsys):
    cfg = printed(capsys, "trainer.seed=4294967295", f"trainer.epochs={2**63 - 1}", "trainer.num_threads=1")
    assert (cfg["trainer"]["seed"], cfg["trainer"]["epochs"]) == (4294967295, 2**63 - 1)


# 3. distill.terms shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("terms, where", [
    ("[{name: [ce]}]", "distill.terms[0].name"),
    ("[{name: {a: 1}}]", "distill.terms[0].name"),
    ("[{name: ''}]", "distill.terms[0].name"),
    ("[{name: 3}]", "distill.terms[0].name"),
    ("[{weight: 1}]", "distill.terms[0]"),
    ("[ce]", "distill.terms[0]"),
    ("[{name: ce}, {name: kd, weight: -1}]", "distill.terms[1].weight"),
    ("[{name: ce, weight: -1}]", "distill.terms[0].weight"),
    ("[{name: ce, weight: .nan}]", "distill.terms[0].weight"),
    ("[{name: ce, weight: .inf}]", "distill.terms[0].weight"),
    ("[{name: ce, weight: [1]}]", "distill.terms[0].weight"),
    ("[{name: ce, weight: true}]", "distill.terms[0].weight"),
    ("[{name: ce, key: ''}]", "distill.terms[0].key"),
])
def test_3_term_entries_have_a_name_and_a_weight_at_least_0(capsys, no_training, tmp_path, terms, where):
    line = refused(capsys, "train", STUDENT, f"trainer.out_dir={tmp_path}", f"distill.terms={terms}")
    assert where in line


def test_3_negative_weight_names_the_key_and_the_value(capsys):
    line = refused(capsys, "print-config", STUDENT, "distill.terms=[{name: ce, weight: -1}]")
    assert "distill.terms[0].weight=-1" in line


def test_3_weight_written_as_yaml_text_gets_a_hint(capsys):
    assert "1.0e-3" in refused(capsys, "print-config", STUDENT, "distill.terms=[{name: ce, weight: 1e-3}]")


def test_3_legit_terms_still_load(capsys):
    terms = printed(capsys, "distill.terms=[{name: ce, weight: 0}, {name: kd, weight: 0.9, temperature: 4}]")
    assert terms["distill"]["terms"] == [{"name": "ce", "weight": 0}, {"name": "kd", "weight": 0.9, "temperature": 4}]
    assert printed(capsys, "distill.terms=[{name: ce}]")["distill"]["terms"] == [{"name": "ce"}]


# 4. data.image_size -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["data.image_size=100000", "data.image_size=4097", "data.synthetic_size=100000",
                                      "data.crop_padding=100000"])
def test_4_image_sides_are_bounded(capsys, no_training, tmp_path, override):
    key = override.split("=")[0]
    line = refused(capsys, "train", STUDENT, f"trainer.out_dir={tmp_path}", override)
    assert f"{key}=" in line and "4096" in line


def test_4_legit_image_sizes_still_load(capsys):
    assert printed(capsys, "data.image_size=4096")["data"]["image_size"] == 4096
    assert printed(capsys, "data.image_size=224")["data"]["image_size"] == 224


# 5. eval.knn_k / eval.knn_temperature (and the exclusive minimum) -----------------------------------------------------


@pytest.mark.parametrize("override, key", [
    ("eval.knn_k=[0]", "eval.knn_k[0]"),
    ("eval.knn_k=[-5]", "eval.knn_k[0]"),
    ("eval.knn_k=[10, 0]", "eval.knn_k[1]"),
    ("eval.knn_k=[]", "eval.knn_k"),
    ("eval.knn_temperature=0", "eval.knn_temperature"),
    ("eval.knn_temperature=-0.1", "eval.knn_temperature"),
    ("optim.lr=0", "optim.lr"),
    ("eval.probe_lr=0", "eval.probe_lr"),
    ("data.std=[0.5, 0]", "data.std[1]"),
    ("data.std=[]", "data.std"),
    ("data.mean=[]", "data.mean"),
])
def test_5_knn_and_other_values_where_zero_is_meaningless(capsys, no_training, tmp_path, override, key):
    line = refused(capsys, "train", STUDENT, f"trainer.out_dir={tmp_path}", override)
    assert f"{key}=" in line


def test_5_exclusive_minimum_says_greater_than(capsys):
    line = refused(capsys, "print-config", STUDENT, "eval.knn_temperature=0")
    assert "eval.knn_temperature=0.0 is out of range: must be > 0" in line


def test_5_legit_values_still_load(capsys):
    cfg = printed(capsys, "eval.knn_k=[1]", "eval.knn_temperature=1e-9", "optim.lr=1e-9", "data.std=[0.5]")
    assert (cfg["eval"]["knn_k"], cfg["eval"]["knn_temperature"], cfg["optim"]["lr"]) == ([1], 1e-9, 1e-9)


def test_5_nesterov_needs_momentum(capsys):
    line = refused(capsys, "print-config", STUDENT, "optim.nesterov=true", "optim.momentum=0")
    assert "optim.nesterov" in line and "optim.momentum=0.0" in line
    assert printed(capsys, "optim.nesterov=true")["optim"]["nesterov"] is True
    assert printed(capsys, "optim.name=adamw", "optim.nesterov=true", "optim.momentum=0")["optim"]["name"] == "adamw"


# 6. no base-60 numbers --------------------------------------------------------------------------------------------


def test_6_sexagesimal_override_is_not_90(capsys, no_training, tmp_path):
    line = refused(capsys, "train", STUDENT, f"trainer.out_dir={tmp_path}", "trainer.epochs=1:30")
    assert "trainer.epochs" in line and "'1:30'" in line


def test_6_sexagesimal_in_a_file_is_not_90(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"_base_: {STUDENT}\ntrainer:\n  epochs: 1:30\n")
    assert "trainer.epochs" in refused(capsys, "print-config", str(path))
    path.write_text("trainer:\n  epochs: !!int 1:30\n")
    assert "not valid YAML" in refused(capsys, "print-config", str(path))
    path.write_text("description: 1:30\n")
    assert load_config(path).description == "1:30"


def test_6_everything_else_of_safe_load_is_kept():
    for text in ["true", "no", "null", "~", "1e-3", "1.0e-3", "0.5", ".5", "-.inf", ".nan", "0x1F", "017", "0b101",
                 "1_000", "2001-02-03", "[1, {a: b}]", "'1:30'", "1.0e3", "+12", "abc"]:
        mine, theirs = parse_yaml(text), yaml.safe_load(text)
        assert type(mine) is type(theirs), text
        assert mine == theirs or (isinstance(mine, float) and math.isnan(mine) and math.isnan(theirs)), text
    assert parse_yaml("1:30") == "1:30" and parse_yaml("-1:30:00") == "-1:30:00" and parse_yaml("1:30.5") == "1:30.5"
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 0.001  # YAML text, parsed by the float field


# 7. alias bombs ---------------------------------------------------------------------------------------------------


def laughs(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "description: laughs\nmodel:\n  kwargs:\n" + "".join(f"    {line}\n" for line in lines)


def test_7_billion_laughs_is_refused_fast(capsys, tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(9))
    assert path.stat().st_size < 1024
    start = time.perf_counter()
    line = refused(capsys, "print-config", str(path))
    assert time.perf_counter() - start < 5.0
    assert str(path) in line and "alias" in line


def test_7_recursive_alias_is_refused(capsys, tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model:\n  kwargs: &k {again: *k}\n")
    assert str(path) in refused(capsys, "print-config", str(path))
    assert "model.kwargs" in refused(capsys, "print-config", STUDENT, "model.kwargs={a: &a [*a]}")


def test_7_legit_anchors_and_aliases_still_work(capsys, tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        f"_base_: {STUDENT}\n"
        "schedule: {milestones: &stones [30, 60]}\n"
        "eval: {probe_milestones: *stones}\n"
        "model: {kwargs: &kw {width: 2}}\n"
        "teacher: {kwargs: {<<: *kw, depth: 3}}\n"
    )
    cfg = load_config(path)
    assert cfg.schedule.milestones == [30, 60] == cfg.eval.probe_milestones
    assert cfg.teacher.kwargs == {"width": 2, "depth": 3}
    capsys.readouterr()
    assert main(["print-config", str(path)]) == 0


def test_7_expansion_is_counted_exactly():
    shared = [1, 2, 3]
    # the alias (b) is one node of the document; its expansion adds the list's 3 items
    assert alias_expansion({"a": shared, "b": shared}) == 3
    assert alias_expansion({"a": shared, "b": [shared, shared]}) == 6
    assert alias_expansion({"a": [1, 2, 3], "b": [1, 2, 3]}) == 0
    assert alias_expansion(parse_yaml(laughs(6))) > MAX_ALIAS_EXPANSION
    assert alias_expansion(parse_yaml(laughs(4))) < MAX_ALIAS_EXPANSION
    loop: list = []
    loop.append(loop)
    assert alias_expansion(loop) is None


# 8. one-line YAML errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line_no, column", [
    ("trainer: {epochs: [\n", 2, 1),
    ("trainer:\n  epochs: 3\n\tseed: 1\n", 3, 1),
    ("a: b: c\n", 1, 5),
    ("x: &a 1\ny: *b\n", 2, 4),
    ("a: \x01\n", 1, 4),
])
def test_8_yaml_syntax_errors_are_one_line(capsys, tmp_path, text, line_no, column):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = refused(capsys, "print-config", str(path))
    assert f"config {path} is not valid YAML: " in line
    assert line.endswith(f" at line {line_no}, column {column}"), line


def test_8_a_base_file_error_names_the_base(capsys, tmp_path):
    (tmp_path / "base.yaml").write_text("trainer: [\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\n")
    line = refused(capsys, "train", str(tmp_path / "child.yaml"))
    assert "base.yaml is not valid YAML" in line


def test_8_an_override_that_is_not_yaml_is_text_then_one_line(capsys):
    line = refused(capsys, "print-config", STUDENT, "trainer.epochs=[")
    assert "trainer.epochs must be an integer, got '['" in line
    with pytest.raises(ConfigError):
        load_config(None, ["eval.knn_k={a: [1"])
