"""Fuzzing values that type-check but are semantically wrong: refused in one line, or accepted, never a traceback.

Negative, zero and huge integers, non-finite and non-positive floats, empty lists, bad durations,
wrongly shaped loss terms and combinations of such overrides go through ``kdlab print-config`` (and
``kdlab train`` with training forbidden). Each either exits 0 with nothing on stderr or exits 2 with
exactly one line ``kdlab <cmd>: error: ...``; where the schema declares a bound, the outcome is
checked against it (a naive oracle computed from the field metadata). Inputs come from hypothesis,
derandomized; the counts are printed (pytest -s).
"""

from __future__ import annotations

import dataclasses
import math
import string
import typing
from pathlib import Path
from typing import Any, Optional

import pytest
from _fault_helpers import InputCounter, fuzz_settings, no_training  # noqa: F401 - a fixture
from hypothesis import given
from hypothesis import strategies as st

from kdlab.cli.main import main
from kdlab.config import Config
from kdlab.config.durations import parse_duration

FUZZ = fuzz_settings(max_examples=40)

REPO = Path(__file__).resolve().parents[2]
STUDENT = str(REPO / "configs" / "demo" / "student.yaml")
INT64 = (-(2**63), 2**63 - 1)
COUNTS = InputCounter("fuzzed semantic inputs without a traceback")



@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\n" + COUNTS.summary())


@dataclasses.dataclass(frozen=True)
class Field:
    key: str
    kind: str  # "int", "float", "int list", "float list"
    optional: bool
    meta: dict[str, Any]


def _fields(cls: type = Config, prefix: str = "") -> list[Field]:
    """The numeric keys of the schema with their metadata (walked here, independent of the loader)."""
    out: list[Field] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        key = f"{prefix}{f.name}"
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += _fields(hint, key + ".")
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        inner = args[0] if optional and len(args) == 1 else hint
        if inner in (int, float):
            out.append(Field(key, inner.__name__, optional, dict(f.metadata)))
        elif typing.get_origin(inner) is list and typing.get_args(inner)[0] in (int, float):
            out.append(Field(key, f"{typing.get_args(inner)[0].__name__} list", optional, dict(f.metadata)))
    return out


FIELDS = _fields()
INT_FIELDS = [f for f in FIELDS if f.kind == "int"]
FLOAT_FIELDS = [f for f in FIELDS if f.kind == "float"]
LIST_FIELDS = [f for f in FIELDS if f.kind.endswith("list")]
#: keys whose values other keys constrain too (a cross-key check may refuse a value its own bounds allow)
CROSS_CHECKED = {"data.label_noise.rate", "optim.momentum", "teachers"}


def in_bounds(field: Field, number: float) -> bool:
    """The naive oracle: the field's declared bounds (and 64 bits for integers)."""
    meta = field.meta
    if isinstance(number, float) and not math.isfinite(number):
        return False
    if field.kind.startswith("int") and not INT64[0] <= number <= INT64[1]:
        return False
    if meta.get("min") is not None and number < meta["min"]:
        return False
    if meta.get("max") is not None and number > meta["max"]:
        return False
    if meta.get("exclusive_min") is not None and not number > meta["exclusive_min"]:
        return False
    return True


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err.splitlines()


def outcome(argv: list[str], capsys: pytest.CaptureFixture[str]) -> bool:
    """True when accepted (exit 0, silent), False when refused (exit 2, one error line); anything else fails."""
    code, lines = run(argv, capsys)
    if code == 0:
        assert lines == [], (argv, lines)
        return True
    assert code == 2, (argv, code, lines)
    assert len(lines) == 1 and lines[0].startswith(f"kdlab {argv[0]}: error: "), (argv, lines)
    return False


def yaml_number(number: float) -> str:
    if isinstance(number, float):
        if math.isnan(number):
            return ".nan"
        if math.isinf(number):
            return ".inf" if number > 0 else "-.inf"
        text = repr(number)  # YAML 1.1 reads a float only with a dot (and a signed exponent): 1e+16 is text
        return text if "." in text else f"{number:.17e}"
    return str(number)


boundary_ints = st.sampled_from([0, -1, 1, 2, 3, 4, 4096, 4097, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
                                 -(2**63), -(2**63) - 1, 10**20, -(10**20)])
ints = st.one_of(boundary_ints, st.integers(min_value=-(2**70), max_value=2**70), st.integers(-10, 10))
floats = st.one_of(
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, -1e-300, 1.0, 1.5, 1e308, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@FUZZ
@given(st.sampled_from(INT_FIELDS), ints)
def test_integer_values_follow_the_declared_bounds(capsys, field, number):
    COUNTS.add("integers")
    accepted = outcome(["print-config", STUDENT, f"{field.key}={number}"], capsys)
    if field.key not in CROSS_CHECKED:
        assert accepted == in_bounds(field, number), (field.key, number, accepted)


@FUZZ
@given(st.sampled_from(FLOAT_FIELDS), floats)
def test_float_values_follow_the_declared_bounds(capsys, field, number):
    COUNTS.add("floats")
    accepted = outcome(["print-config", STUDENT, f"{field.key}={yaml_number(number)}"], capsys)
    if field.key not in CROSS_CHECKED:
        assert accepted == in_bounds(field, number), (field.key, number, accepted)


@FUZZ
@given(st.sampled_from(LIST_FIELDS), st.lists(st.one_of(ints, floats), max_size=4))
def test_number_lists_follow_the_declared_bounds(capsys, field, numbers):
    COUNTS.add("number lists")
    if field.kind == "int list":
        numbers = [n if isinstance(n, int) else 0 for n in numbers]
    text = "[" + ", ".join(yaml_number(n) for n in numbers) + "]"
    accepted = outcome(["print-config", STUDENT, f"{field.key}={text}"], capsys)
    expected = len(numbers) >= field.meta.get("min_items", 0) and all(in_bounds(field, n) for n in numbers)
    assert accepted == expected, (field.key, numbers, accepted)


units = st.sampled_from(["d", "h", "m", "s", "", "x", "ms", "H", " "])
duration_number = st.one_of(st.integers(-5, 10**6).map(str), floats.map(repr), st.sampled_from(["", ".5", "1."]))
duration_part = st.tuples(duration_number, units).map("".join)
durations = st.one_of(
    st.lists(duration_part, min_size=0, max_size=3).map("".join),
    st.text(max_size=12),
    st.sampled_from(["inf", "nan", "0", "0s", "0h0m", "-3h", "1e3", "3h50m", "1:30", "''", "null", "9" * 400]),
)


@FUZZ
@given(durations)
def test_durations_are_positive_and_finite_or_refused(capsys, text):
    COUNTS.add("durations")
    if "=" in text or text.strip().startswith("-"):  # "-..." is an option to argparse, "=" another override
        text = text.replace("=", "").lstrip(" -")
    accepted = outcome(["print-config", STUDENT, f"trainer.time_limit={text}"], capsys)
    if accepted:
        from kdlab.config import load_config

        value = load_config(STUDENT, [f"trainer.time_limit={text}"]).trainer.time_limit
        if value is not None:
            seconds = parse_duration(value)
            assert math.isfinite(seconds) and seconds > 0, (text, seconds)


#: printable text (YAML refuses control characters in any scalar: the whole override would then be text)
printable = st.text(alphabet=string.ascii_letters + string.digits + " _-:.,'[]{}#&*!|>%@`\"", max_size=5)
term_names = st.one_of(st.sampled_from(["ce", "kd", "dkd", "", " "]), printable, st.integers(), st.none(),
                       st.lists(st.sampled_from(["ce", "kd"]), max_size=2))
term_weights = st.one_of(floats, ints, st.booleans(), st.none(), st.text(max_size=4), st.just([1]))
terms = st.lists(
    st.one_of(
        st.fixed_dictionaries({"name": term_names}, optional={"weight": term_weights}),
        st.fixed_dictionaries({}, optional={"weight": term_weights}),
        term_names,
    ),
    max_size=3,
)


def flow(value: Any) -> str:
    """``value`` as YAML flow text (what a user types in an override)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return yaml_number(value)


def term_ok(term: Any) -> bool:
    """The naive oracle of the generic term shape."""
    if not isinstance(term, dict) or not isinstance(term.get("name"), str) or not term["name"].strip():
        return False
    if "weight" not in term:
        return True
    weight = term["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        return False
    try:
        return math.isfinite(weight) and weight >= 0
    except OverflowError:
        return False


@FUZZ
@given(terms)
def test_term_shapes_follow_the_generic_rules(capsys, entries):
    COUNTS.add("term lists")
    accepted = outcome(["print-config", STUDENT, f"distill.terms={flow(entries)}"], capsys)
    assert accepted == all(term_ok(t) for t in entries), (entries, accepted)


def one_override(draw_field: Field, value: Any) -> str:
    return f"{draw_field.key}={flow(value)}"


overrides = st.one_of(
    st.tuples(st.sampled_from(INT_FIELDS), ints).map(lambda fv: one_override(*fv)),
    st.tuples(st.sampled_from(FLOAT_FIELDS), floats).map(lambda fv: one_override(*fv)),
    st.tuples(st.sampled_from(LIST_FIELDS), st.lists(ints, max_size=3)).map(lambda fv: one_override(*fv)),
    durations.filter(lambda t: "=" not in t).map(lambda t: f"trainer.time_limit={t.lstrip(' -')}"),
    terms.map(lambda t: f"distill.terms={flow(t)}"),
    st.sampled_from(["optim.nesterov=true", "optim.momentum=0", "optim.name=adamw", "trainer.epochs=1:30",
                     "data.label_noise.rate=0.5", "data.per_class=0.5", "data.per_class=3", f"data.per_class={2**64}",
                     "model.kwargs={a: &x [1, 2], b: *x}", "model.kwargs=&l [*l]"]),
)


@FUZZ
@given(st.lists(overrides, min_size=1, max_size=4))
def test_combinations_refuse_in_one_line_or_load(capsys, argv_overrides):
    COUNTS.add("override combinations")
    outcome(["print-config", STUDENT, *argv_overrides], capsys)




def out_of_bounds(field: Field) -> Optional[str]:
    """An override of ``field`` that its declared bounds refuse, or None when it has none to break."""
    meta = field.meta
    item = field.kind.endswith("list")
    if meta.get("exclusive_min") is not None:
        bad: Any = meta["exclusive_min"]
    elif meta.get("min") is not None:
        bad = meta["min"] - 1
    elif meta.get("max") is not None:
        bad = meta["max"] + 1
    elif field.kind.startswith("int"):
        bad = 2**63
    else:
        bad = math.inf
    return f"{field.key}={flow([bad] if item else bad)}"


@FUZZ
@given(st.sampled_from(FIELDS), st.lists(overrides, max_size=2))
def test_train_with_an_out_of_bounds_value_never_trains(capsys, tmp_path_factory, no_training, field, others):
    COUNTS.add("train argv")
    bad = out_of_bounds(field)
    others = [o for o in others if o.split("=", 1)[0] != field.key]
    out = tmp_path_factory.mktemp("run")
    assert not outcome(["train", STUDENT, f"trainer.out_dir={out}", *others, bad], capsys)
