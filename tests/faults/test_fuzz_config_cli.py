"""Fuzzing the config loader and the command line: only clean errors, never a traceback.

Every input either loads (a valid Config / exit 0) or is refused with a
ConfigError / exit code 2. Inputs come from hypothesis, derandomized so CI
sees the same examples every run; the counts are printed (pytest -s).
"""

from __future__ import annotations

import string

import pytest
import yaml
from _fault_helpers import InputCounter, fuzz_settings, no_training  # noqa: F401 - a fixture
from hypothesis import given
from hypothesis import strategies as st

from kdlab.cli.main import main
from kdlab.config import Config, ConfigError, all_keys, from_dict, load_config

FUZZ = fuzz_settings(max_examples=60)

KEYS = all_keys()
SECTIONS = sorted({key.split(".")[0] for key in KEYS})
#: keys whose values a user types: real ones, near misses, nonsense
key_text = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(SECTIONS),
    st.sampled_from(KEYS).map(lambda k: k[:-1]),
    st.text(alphabet=string.ascii_letters + "._-", min_size=0, max_size=20),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["auto", "cpu", "sgd", "cosine", "synthetic", "resnet8", "1e-3", "3h50m", "", "~", "[]", "{}"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
value_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["0", "-1", "1.5", ".nan", ".inf", "-.inf", "null", "true", "[1, 2]", "{a: 1}", "2001-13-45",
                     "2001-02-30 25:61:00", "!!binary xyz", "'", "[", "{{", "&a [*a]", "*x", "@", "%YAML 9", "\t"]),
)
COUNTS = InputCounter("fuzzed inputs without a traceback")
COMMANDS = ("train", "eval", "print-config", "list-models", "list-methods", "data", "bench", "demo", "report",
            "knn-index", "cache-teacher")



@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\n" + COUNTS.summary())


def nested(pairs: list[tuple[str, object]]) -> dict:
    """Dotted keys -> nested mappings (later pairs win, a scalar on the way is replaced)."""
    out: dict = {}
    for key, value in pairs:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


@FUZZ
@given(st.lists(st.tuples(key_text, values), max_size=6))
def test_from_dict_accepts_or_refuses_cleanly(pairs):
    COUNTS.add("mappings")
    try:
        assert isinstance(from_dict(nested(pairs)), Config)
    except ConfigError:
        pass


@FUZZ
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.tuples(key_text, values), max_size=6).map(lambda pairs: yaml.safe_dump(nested(pairs))),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
))
def test_yaml_files_load_or_refuse_cleanly(tmp_path_factory, text):
    COUNTS.add("yaml files")
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(path)
    except ConfigError:
        pass


@FUZZ
@given(st.binary(max_size=60))
def test_undecodable_yaml_bytes_are_refused_cleanly(tmp_path_factory, raw):
    COUNTS.add("yaml bytes")
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_bytes(b"trainer:\n  epochs: 3\n" + raw)
    try:
        load_config(path)
    except ConfigError:
        pass


override = st.one_of(
    st.tuples(key_text, value_text).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=30),
)


@FUZZ
@given(st.lists(override, max_size=5))
def test_overrides_apply_or_refuse_cleanly(overrides):
    COUNTS.add("override lists")
    try:
        load_config(None, overrides)
    except ConfigError:
        pass


options = st.sampled_from(["--resume", "--resume-force", "--unsafe-load", "--help", "-h", "--nope", "--", "-", "--resume=auto"])
argv_tokens = st.lists(st.one_of(override, options, st.text(max_size=15)), max_size=6)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> int:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse: usage errors (2), --help (0)
        code = stop.code
    capsys.readouterr()
    return code


@FUZZ
@given(argv_tokens, st.booleans())
def test_print_config_argv_exits_0_or_2(capsys, tmp_path_factory, tokens, with_file):
    COUNTS.add("print-config argv")
    argv = ["print-config"]
    if with_file:
        path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
        path.write_text("trainer:\n  epochs: 2\n")
        argv.append(str(path))
    assert run_cli([*argv, *tokens], capsys) in (0, 2)


@FUZZ
@given(argv_tokens, st.sampled_from(["trainer.epochs=0", "trainer.epochs=-3", "optim.lr=-1", "data.batch_size=0",
                                     "trainer.log_every=0", "schedule.name=linear", "optim.lr=.nan"]))
def test_train_argv_with_an_invalid_value_never_trains(capsys, tmp_path_factory, no_training, tokens, invalid):
    COUNTS.add("train argv")
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text("{}\n")
    # nothing after the invalid value may reset it (a later override, or a whole section replaced)
    section = invalid.split(".")[0]
    tokens = [t for t in tokens if not t.split("=", 1)[0].strip().startswith(section)]
    code = run_cli(["train", str(path), invalid, *tokens], capsys)
    helped = any(t in ("-h", "--help") for t in tokens)
    assert code == 2 or (helped and code == 0), (tokens, code)


@FUZZ
@given(st.lists(st.text(max_size=12), max_size=5))
def test_any_argv_exits_cleanly(capsys, tokens):
    COUNTS.add("raw argv")
    # a random first word is almost never a command; when it is one that does work, drop it
    if tokens and tokens[0] in COMMANDS and tokens[0] not in ("print-config", "list-models", "list-methods"):
        tokens = tokens[1:]
    assert run_cli(tokens, capsys) in (0, 2)


def test_a_long_or_nul_path_is_a_clean_error():
    for bad in ("x" * 5000 + ".yaml", "a\0b.yaml"):
        with pytest.raises(ConfigError):
            load_config(bad)
    assert main(["print-config", "y" * 5000]) == 2
