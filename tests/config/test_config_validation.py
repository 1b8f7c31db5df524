"""The config schema: overrides, inheritance and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.config import ConfigError, all_keys, dump_yaml, from_dict, load_config


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert cfg.trainer.epochs >= 1 and cfg.data.name == "digits"


def test_override_sets_nested_values_with_yaml_types():
    cfg = load_config(None, ["trainer.epochs=7", "optim.lr=0.1", "trainer.stop_after_steps=3", "data.mean=[0.5]"])
    assert (cfg.trainer.epochs, cfg.optim.lr, cfg.trainer.stop_after_steps, cfg.data.mean) == (7, 0.1, 3, [0.5])


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"trainer\.epoch .*did you mean trainer\.epochs\?"):
        load_config(None, ["trainer.epoch=3"])


def test_unknown_section_suggests_a_section_key():
    with pytest.raises(ConfigError, match=r"did you mean trainer"):
        load_config(None, ["trainr.epochs=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.epochs=abc", r"trainer\.epochs must be an integer, got 'abc'"),
        ("trainer.epochs=0", r"trainer\.epochs=0 is out of range"),
        ("trainer.device=gpu", r"trainer\.device='gpu' is not one of auto, cpu, cuda"),
        ("optim.lr=-1", r"optim\.lr=-1\.0 is out of range"),
        ("data.batch_size=1.5", r"data\.batch_size must be an integer, got 1\.5"),
        ("trainer.channels_last=maybe", r"trainer\.channels_last must be true or false"),
        ("distill.terms=5", r"distill\.terms must be a list"),
    ],
)
def test_bad_values_name_the_key_and_the_value(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_config_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["trainer.epochs"])


def test_base_inheritance_merges_mappings_and_replaces_lists(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("trainer: {epochs: 5, seed: 3}\nschedule: {milestones: [1, 2, 3]}\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrainer: {epochs: 9}\nschedule: {milestones: [4]}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.trainer.epochs, cfg.trainer.seed, cfg.schedule.milestones) == (9, 3, [4])


def test_overrides_win_over_files(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("trainer: {epochs: 5}\n")
    assert load_config(tmp_path / "c.yaml", ["trainer.epochs=2"]).trainer.epochs == 2


def test_invalid_yaml_is_reported_with_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {epochs: [\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)


def test_dump_round_trips():
    cfg = load_config(None, ["trainer.epochs=4", "distill.terms=[{name: kd, weight: 0.9}]"])
    import yaml

    assert from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


def test_schema_lists_the_keys_the_issues_name():
    keys = set(all_keys())
    for key in (
        "trainer.epochs", "trainer.out_dir", "trainer.seed", "trainer.device", "trainer.stop_after_steps",
        "data.name", "data.root", "data.batch_size", "data.num_workers", "data.subset",
        "distill.labels", "distill.gather", "distill.teacher_cache", "trainer.time_limit", "trainer.keep_last",
    ):
        assert key in keys, key


def test_every_shipped_config_validates():
    root = Path(__file__).resolve().parents[2] / "configs"
    files = [p for p in root.rglob("*.yaml") if "_base_" not in p.parts and not p.name.startswith("_")]
    assert files
    for path in files:
        load_config(path)
