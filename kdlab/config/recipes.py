"""Recipes: the YAML configs shipped inside the package, addressed by name.

The recipes are package data (``kdlab/configs/``; in a checkout that folder is a link to the
top-level ``configs/``), so an installed kdlab trains, evaluates and prints them without a
checkout. A recipe's name is its path below that folder without ``.yaml``:
``cifar100/kd/resnet32x4_resnet8x4``. Files and folders whose names start with ``_`` (the
``_base_`` includes) are parts of recipes, not recipes.

Wherever a CONFIG is taken, a file on disk wins; only a path that is not a file is looked up as a
recipe. A lookup also accepts the name as the docs spell checkout paths (``configs/NAME.yaml``),
so their commands work outside a checkout too.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.resources
from pathlib import Path, PurePosixPath
from typing import Optional, Union

from kdlab.config.loader import ConfigError

#: the package that holds the recipes folder, and that folder's name inside it
RECIPES_PACKAGE = "kdlab"
RECIPES_FOLDER = "configs"
SUFFIX = ".yaml"
_GLOB_CHARACTERS = frozenset("*?[")


def recipes_root() -> Path:
    """The folder of the shipped recipes (inside the installed package)."""
    root = importlib.resources.files(RECIPES_PACKAGE).joinpath(RECIPES_FOLDER)
    if not isinstance(root, Path):  # e.g. kdlab imported from a zip: _base_ includes need real files
        raise ConfigError(f"kdlab's recipes ({root}) are not files on disk; install kdlab unzipped")
    return root


def _is_recipe_file(relative: PurePosixPath) -> bool:
    return relative.suffix == SUFFIX and not any(part.startswith("_") for part in relative.parts)


def recipe_names(pattern: Optional[str] = None) -> list[str]:
    """Sorted names of the shipped recipes, optionally only those matching ``pattern``.

    ``pattern`` is a case-insensitive glob when it holds ``*``, ``?`` or ``[`` (``*`` crosses
    ``/``: ``cifar100/kd/*``), else a case-insensitive substring (``resnet8x4``).
    """
    root = recipes_root()
    if not root.is_dir():
        raise ConfigError(f"kdlab's recipes folder {root} is missing; reinstall kdlab")
    names = []
    for path in root.rglob(f"*{SUFFIX}"):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if _is_recipe_file(relative):
            names.append(str(relative.with_suffix("")))
    names.sort(key=lambda name: (name.lower(), name))
    if pattern is None:
        return names
    probe = pattern.lower()
    if _GLOB_CHARACTERS & set(probe):
        return [name for name in names if fnmatch.fnmatchcase(name.lower(), probe)]
    return [name for name in names if probe in name.lower()]


def _as_name(text: str) -> Optional[str]:
    """``text`` as a recipe name (``configs/`` prefix and ``.yaml`` dropped); None when it cannot be one."""
    posix = PurePosixPath(text.replace("\\", "/"))
    parts = posix.parts
    if not parts or posix.is_absolute() or any(part in ("", ".", "..") for part in parts):
        return None
    if parts[0] == RECIPES_FOLDER and len(parts) > 1:
        parts = parts[1:]
    name = PurePosixPath(*parts)
    return str(name.with_suffix("") if name.suffix == SUFFIX else name)


def find_recipe(text: str) -> Optional[Path]:
    """The shipped file ``text`` names as a recipe (``configs/`` and ``.yaml`` optional), or None.

    For commands that take more than a CONFIG (a run folder, a checkpoint): a path that exists
    still wins, check it first.
    """
    name = _as_name(text)
    if name is None or not _is_recipe_file(PurePosixPath(name + SUFFIX)):
        return None
    path = recipes_root() / (name + SUFFIX)
    try:
        return path if path.is_file() else None
    except (OSError, ValueError):  # e.g. a name the file system finds too long once .yaml is added
        return None


def recipe_path(name: str) -> Path:
    """The file of the recipe ``name``; ConfigError naming the closest recipes when there is none."""
    path = find_recipe(name)
    if path is None:
        raise ConfigError(f"unknown recipe {name!r}{_suggestion(name)}")
    return path


def resolve_config(config: Union[str, Path]) -> Path:
    """The file a CONFIG argument means: the path itself when it is a file, else the recipe of that name.

    Neither: ConfigError 'config file not found', naming the closest recipes. A path the file
    system refuses to look at (a name too long, a NUL byte) comes back as it is, for the loader
    to report.
    """
    path = Path(config)
    try:
        if path.is_file():
            return path
    except (OSError, ValueError):
        return path
    recipe = find_recipe(str(config))
    if recipe is None:
        raise ConfigError(f"config file not found: {path}; nor is it a recipe{_suggestion(str(config))}")
    return recipe


def recipe_description(path: Path) -> Optional[str]:
    """The ``description`` a recipe file sets (or inherits from its ``_base_`` files), None without one."""
    from kdlab.config.loader import _read_yaml  # the loader's include-merging reader, without validation

    value = _read_yaml(Path(path)).get("description")
    return str(value) if value is not None else None


def _suggestion(text: str) -> str:
    """' (did you mean A, B?)' for the recipes closest to ``text``; a pointer to list-configs without any."""
    try:
        names = recipe_names()
    except ConfigError:  # no recipes folder: nothing to suggest from
        return ""
    name = (_as_name(text) or text).lower()
    close = [n for n in names if n.lower().endswith("/" + name)]  # the name without its leading folders
    by_lower = {n.lower(): n for n in names}
    close += [by_lower[n] for n in difflib.get_close_matches(name, list(by_lower), n=3, cutoff=0.6)
              if by_lower[n] not in close]
    if not close:  # e.g. the right file name in the wrong folder
        leaf = name.rsplit("/", 1)[-1]
        close = [n for n in names if n.rsplit("/", 1)[-1].lower() == leaf]
    close = close[:3]
    if close:
        return f" (did you mean {', '.join(close)}?)"
    return " (kdlab list-configs lists them)"
