"""Recipes by name: listing, lookup, a file on disk winning, close matches, ``kdlab list-configs``.

The wheel install (recipes shipped as package data, used outside a checkout) is
tests/config/test_recipes_install.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.cli.main import main
from kdlab.config import ConfigError, load_config
from kdlab.config.recipes import recipe_description, recipe_names, recipe_path, recipes_root, resolve_config
from kdlab.reporting.demo_plan import default_config_dir
from kdlab.reporting.detection_demo import detection_config_dir

REPO = Path(__file__).resolve().parents[2]
KD = "cifar100/kd/resnet32x4_resnet8x4"


def test_the_package_recipes_are_the_checkout_configs() -> None:
    """kdlab/configs is a link to configs/: one set of files, shipped by the wheel, edited in place."""
    assert (REPO / "kdlab" / "configs").is_symlink()
    assert recipes_root().resolve() == (REPO / "configs").resolve()


def test_names_are_paths_without_yaml_and_skip_base_files() -> None:
    names = recipe_names()
    on_disk = {
        p.relative_to(REPO / "configs").with_suffix("").as_posix()
        for p in (REPO / "configs").rglob("*.yaml")
        if not any(part.startswith("_") for part in p.relative_to(REPO / "configs").parts)
    }
    assert set(names) == on_disk and len(names) == len(on_disk)
    assert KD in names and "demo/teacher" in names and "demo/detection/roi_ckd" in names
    assert not [n for n in names if "_base_" in n or n.endswith(".yaml")]
    assert names == sorted(names, key=lambda n: (n.lower(), n))


@pytest.mark.parametrize(
    "pattern, expected, absent",
    [
        ("resnet8x4", "cifar100/kd/resnet32x4_resnet8x4", "demo/teacher"),  # substring
        ("RESNET8X4", "cifar100/kd/resnet32x4_resnet8x4", "demo/teacher"),  # case-insensitive
        ("demo/*", "demo/detection/teacher", "cifar100/kd/resnet32x4_resnet8x4"),  # glob, * crosses /
        ("cifar100/kd/*", "cifar100/kd/resnet32x4_ShuffleV1", "cifar100/dkd/resnet32x4_resnet8x4"),
    ],
)
def test_patterns_filter(pattern: str, expected: str, absent: str) -> None:
    names = recipe_names(pattern)
    assert expected in names and absent not in names


@pytest.mark.parametrize("spelling", [KD, f"{KD}.yaml", f"configs/{KD}.yaml", f"configs/{KD}"])
def test_a_name_works_like_a_path_from_any_directory(spelling: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: the packaged recipe answers
    assert resolve_config(spelling) == recipes_root() / f"{KD}.yaml"
    cfg = load_config(spelling, ["trainer.epochs=2"])
    assert cfg.model.name == "resnet8x4" and cfg.trainer.epochs == 2
    assert cfg.optim.lr == load_config(REPO / "configs" / f"{KD}.yaml").optim.lr  # its _base_ was read


def test_a_file_on_disk_wins_over_a_recipe_name(tmp_path: Path, monkeypatch) -> None:
    own = tmp_path / "demo" / "teacher"  # a file (no suffix) at the path the recipe name spells
    own.parent.mkdir()
    own.write_text("description: mine\nmodel: {name: resnet8}\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config("demo/teacher") == Path("demo/teacher")
    assert load_config("demo/teacher").description == "mine"
    (tmp_path / "configs" / "demo").mkdir(parents=True)  # and a checkout-style path
    (tmp_path / "configs" / "demo" / "kd.yaml").write_text("description: my kd\n")
    assert load_config("configs/demo/kd.yaml").description == "my kd"


@pytest.mark.parametrize(
    "config, message",
    [
        ("cifar100/kd/resnet32x4_resnet8x", "did you mean cifar100/kd/resnet32x4_resnet8x4"),
        ("kd/resnet32x4_resnet8x4", "did you mean cifar100/kd/resnet32x4_resnet8x4"),  # folder left out
        ("cifar100/nope/resnet32x4_resnet8x4", "did you mean cifar100/"),  # the file name, wrong folder
        ("no/such/config.yaml", "kdlab list-configs lists them"),
        ("cifar100/_base_/standard", "config file not found"),  # a _base_ file is no recipe
        ("../configs/demo/teacher", "config file not found"),  # no climbing out of the recipes
    ],
)
def test_unknown_names_are_one_clear_line(config: str, message: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="^config file not found: ") as info:
        load_config(config)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("config", ["y" * 252, "y" * 5000, "a\0b"])
def test_names_the_file_system_refuses_are_clean_errors(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    """252 characters are a valid file name, 257 (with .yaml, as a recipe) are not: still one line, exit 2."""
    assert main(["print-config", config]) == 2
    assert "print-config: error: config file" in capsys.readouterr().err


def test_recipe_path_and_description() -> None:
    assert recipe_path("demo/teacher") == default_config_dir() / "teacher.yaml"
    assert recipe_description(recipe_path("demo/teacher")) == "demo teacher (resnet20 on 8x8 digits)"
    with pytest.raises(ConfigError, match=r"unknown recipe 'demo/teachr' \(did you mean demo/teacher"):
        recipe_path("demo/teachr")


def test_the_demos_read_the_packaged_recipes() -> None:
    assert default_config_dir() == recipes_root() / "demo"
    assert detection_config_dir() == recipes_root() / "demo" / "detection"
    assert (detection_config_dir() / "teacher.yaml").is_file()


def test_list_configs_prints_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == recipe_names()
    assert main(["list-configs", "demo/detection/*"]) == 0
    assert capsys.readouterr().out.split() == ["demo/detection/roi_ckd", "demo/detection/student",
                                               "demo/detection/teacher"]


def test_list_configs_long_shows_descriptions_and_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-configs", "--long", "demo/teacher"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("demo/teacher  demo teacher (resnet20 on 8x8 digits)  [")
    assert line.endswith(f"{recipe_path('demo/teacher')}]")


def test_list_configs_without_a_match_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list-configs", "no-such-recipe"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no recipe matches 'no-such-recipe'" in captured.err


def test_commands_take_a_recipe_name(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["print-config", "demo/teacher", "trainer.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and "name: digits" in out and "name: resnet20" in out
    assert main(["print-config", "demo/teachr"]) == 2
    assert "did you mean demo/teacher" in capsys.readouterr().err
