"""YAML files + ``key.sub=value`` overrides -> one validated :class:`Config`.

Errors are produced from the schema: an unknown key names the closest valid
key, a wrong type or out-of-range value names the key and the value. They
are :class:`ConfigError`, which the CLI turns into exit code 2.

A config file may start from others with ``_base_: path`` (or a list of
paths, relative to the file); later files and overrides win, mappings merge
key by key, lists are replaced.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import yaml

from kdlab.config.durations import parse_duration
from kdlab.config.errors import ConfigError
from kdlab.config.schema import INT_MAX, INT_MIN, Config
from kdlab.config.yaml_reading import check_alias_expansion, load_yaml, parse_yaml

BASE_KEY = "_base_"


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    try:
        found = path.is_file()
    except (OSError, ValueError) as err:  # a name too long, a NUL byte, ...
        raise ConfigError(f"config file {str(path)[:200]!r} cannot be opened: {err}") from None
    if not found:
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in chain:
        raise ConfigError(f"config {path}: circular {BASE_KEY} chain")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text: {err}") from None
    except OSError as err:
        raise ConfigError(f"config {path} cannot be read: {err}") from None
    data = load_yaml(text, f"config {path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"config {path}: {BASE_KEY} must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge(merged, _read_yaml(path.parent / base, chain + (path.resolve(),)))
    return merge(merged, data)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins, lists are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError):  # not YAML (or an impossible date): the text itself
        value = raw
    check_alias_expansion(value, f"override {key}")
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


def load_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (or none: all defaults), apply overrides, validate.

    ``path`` is a file, or the name of a shipped recipe (``cifar100/kd/resnet32x4_resnet8x4``;
    see :mod:`kdlab.config.recipes`); a file on disk wins.
    """
    from kdlab.config.recipes import resolve_config  # it imports ConfigError from here

    data: dict[str, Any] = _read_yaml(resolve_config(path)) if path is not None else {}
    return from_dict(apply_overrides(data, overrides))


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a plain mapping against the schema."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    return _build(Config, with_task_defaults(data), prefix="")


#: per task, the values of keys a config leaves unset (classification's are the schema defaults)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "detection": {
        "data.augment": "flip",
        "trainer.best_metric": "val_map",
        "distill.terms": [{"name": "det", "weight": 1.0}],
    },
}


def with_task_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its task's defaults filled in where the config sets nothing."""
    defaults = TASK_DEFAULTS.get(data.get("task")) if isinstance(data.get("task"), str) else None
    if not defaults:
        return data
    out = copy.deepcopy(data)
    for dotted, value in defaults.items():
        section, key = dotted.split(".")
        node = out.get(section)
        if node is None:
            node = out[section] = {}
        if isinstance(node, dict) and key not in node:
            node[key] = copy.deepcopy(value)
    return out


def flatten_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; ``kwargs`` mappings stay whole (they are values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "kwargs":
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, e.g. ``trainer.epochs``."""
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        nested = _nested_dataclass(cls, f)
        if nested is not None:
            keys.extend(all_keys(nested, name + "."))
        else:
            keys.append(name)
    return keys


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_dataclass(cls: type, f: dataclasses.Field) -> Optional[type]:
    hint = _hints(cls)[f.name]
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {_show(data)}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise ConfigError(_unknown_key_message(f"{prefix}{key}", value))
    values: dict[str, Any] = {}
    for name, value in data.items():
        f = fields[name]
        key = f"{prefix}{name}"
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key + ".")
        else:
            values[name] = _check_value(key, value, hint, f.metadata)
    return cls(**values)


def _unknown_key_message(key: str, value: Any = None) -> str:
    candidates = all_keys()
    candidates += sorted({k.rsplit(".", 1)[0] for k in candidates if "." in k})
    probe = key
    if isinstance(value, dict) and value:
        probe = f"{key}.{next(iter(value))}"
    close = difflib.get_close_matches(probe, candidates, n=1, cutoff=0.5)
    if not close:
        leaf = key.split(".")[-1]
        close = [k for k in candidates if k.split(".")[-1] == leaf][:1]
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown config key {key}{hint}"


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_value(key: str, value: Any, hint: Any, meta: Any) -> Any:
    """``value`` coerced to ``hint`` and checked against the field's metadata.

    Metadata (all optional): ``choices``; ``min`` / ``max`` (inclusive) and ``exclusive_min`` (the value
    must be greater) bound a number, or each number of a list; ``min_items`` / ``max_items`` bound a
    list's length; ``duration`` (true) makes a string a duration (:func:`parse_duration`, > 0). Every
    integer must also fit in 64 bits (``INT_MIN`` .. ``INT_MAX``) unless ``min`` / ``max`` are tighter.
    """
    value = _coerce(key, value, hint)
    if value is None:
        return value
    if isinstance(value, list):
        _check_length(key, value, meta)
        for i, item in enumerate(value):
            _check_scalar(f"{key}[{i}]", item, meta)
        return value
    return _check_scalar(key, value, meta)


def _check_length(key: str, value: list[Any], meta: Any) -> None:
    least, most = meta.get("min_items"), meta.get("max_items")
    if least is not None and len(value) < least:
        if not value:
            raise ConfigError(f"{key}=[] is empty: it needs at least {least} item{'s' if least > 1 else ''}")
        raise ConfigError(f"{key}={value!r} has {len(value)} items: it needs at least {least}")
    if most is not None and len(value) > most:
        raise ConfigError(f"{key}={value!r} has {len(value)} items: it takes at most {most}")


def _check_scalar(key: str, value: Any, meta: Any) -> Any:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}")
    if meta.get("duration") and isinstance(value, str):
        parse_duration(value, key=key)  # raises ConfigError naming the key and the text
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    lo, hi, above = meta.get("min"), meta.get("max"), meta.get("exclusive_min")
    if isinstance(value, int):  # a 64-bit integer at most: torch and numpy take no wider one
        lo = INT_MIN if lo is None else max(lo, INT_MIN)
        hi = INT_MAX if hi is None else min(hi, INT_MAX)
    shown = _show_number(value)
    if above is not None and not value > above:
        raise ConfigError(f"{key}={shown} is out of range: must be > {above}")
    if lo is not None and value < lo:
        raise ConfigError(f"{key}={shown} is out of range: must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}={shown} is out of range: must be <= {hi}")
    return value


def _show_number(value: Union[int, float]) -> str:
    """``repr`` of a number, shortened for integers too long to read (or to print: Python caps int -> str)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"<a {value.bit_length()}-bit integer>"
    return repr(value)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0]) if len(inner) == 1 else value
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        base_60 = " (a base-60 number in YAML 1.1; kdlab reads it as text)" if isinstance(value, str) \
            and re.fullmatch(r"[-+]?[0-9]+(:[0-9]+)+(\.[0-9]*)?", value.strip()) else ""
        raise ConfigError(f"{key} must be an integer, got {_show(value)}{base_60}")
    if hint is float:
        number: Optional[float] = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key} must be a number, got {_show(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {_show(value)}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {_show(value)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {_show(value)}")
        item = args[0] if args else Any
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {_show(value)}")
        if not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key} must have string keys, got {_show(value)}")
        return dict(value)
    return value
