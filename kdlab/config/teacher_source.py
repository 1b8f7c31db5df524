"""Where a teacher comes from: a registry name and a weights file, a kdlab checkpoint file, or a kdlab run folder.

``teacher.checkpoint`` may be

- a kdlab run folder (``runs/x``): the weights are ``checkpoints/best.pt`` (else ``last.pt``), the
  architecture comes from the folder's ``config.yaml``;
- a kdlab checkpoint file (``runs/x/checkpoints/best.pt``): the architecture, model kwargs and number
  of classes come from the config stored inside the checkpoint;
- any other weights file (a released teacher, a torchvision file, ...): then ``teacher.name`` names
  the architecture.

An explicit ``teacher.name`` that contradicts the stored architecture is an error naming both: a
silent override would load weights into the wrong network, or fail later with a key listing.

Several teachers (``teachers:``, docs/multi_teacher.md) are validated here too (:func:`checked_teachers`,
called by the schema), and each is seen through a single-teacher view of the config
(:func:`single_teacher_view`): the one-teacher code (building, cache keys, SSKD's head) then serves
every teacher unchanged.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from pathlib import Path
from typing import Any, Optional

from kdlab.config.loader import ConfigError, load_config
from kdlab.config.schema import Config, TeacherConfig, TeacherEntry

_STORED_MODELS: dict[tuple[str, int, int], Optional[dict[str, Any]]] = {}


def stored_model_config(path: str | Path) -> Optional[dict[str, Any]]:
    """The ``model`` section of the config a kdlab checkpoint file carries, or None for other files.

    Read safely (``weights_only``) and memory-mapped where the format allows, so a large teacher is not
    read twice; a file that does not parse as a kdlab checkpoint is simply not one (its own loader
    reports what is wrong with it later).
    """
    import torch

    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key in _STORED_MODELS:
        return _STORED_MODELS[key]
    data: Any = None
    for mmap in (True, False):  # files in torch's legacy (pre-zip) format cannot be memory-mapped
        try:
            data = torch.load(resolved, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception:  # noqa: BLE001 - any unreadable or foreign file is "not a kdlab checkpoint"
            continue
    model = None
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "model" in data:
        stored = data["config"].get("model")
        if isinstance(stored, dict) and isinstance(stored.get("name"), str):
            model = stored
    _STORED_MODELS[key] = model
    return model


def _architecture_from_checkpoint(checkpoint: str) -> Optional[tuple[str, dict[str, Any], Optional[int]]]:
    """(name, kwargs, num_classes) stored in a kdlab checkpoint file, or None for a plain weights file.

    Read field by field rather than through today's schema, so checkpoints written by an older kdlab
    (whose configs may hold keys since removed) keep working as teachers.
    """
    stored = stored_model_config(checkpoint)
    if stored is None:
        return None
    kwargs = stored.get("kwargs") or {}
    classes = stored.get("num_classes")
    if not isinstance(kwargs, dict) or not (classes is None or isinstance(classes, int)):
        raise ConfigError(
            f"teacher.checkpoint={checkpoint}: its stored config has an unreadable model section "
            f"(kwargs={kwargs!r}, num_classes={classes!r})"
        )
    return stored["name"], dict(kwargs), classes


def _checked_name(explicit: Optional[str], stored: str, where: str) -> str:
    if explicit is not None and explicit != stored:
        raise ConfigError(
            f"teacher.name={explicit!r} contradicts the architecture stored in {where} ({stored!r}); "
            f"remove teacher.name or set it to {stored!r}"
        )
    return stored


def resolve_teacher_source(cfg: Config) -> tuple[str, Optional[str], dict[str, Any], Optional[int]]:
    """(name, checkpoint file, kwargs, num_classes); a kdlab run folder or checkpoint supplies what is missing."""
    if cfg.teachers:
        raise ConfigError(
            f"this step reads the one teacher of teacher.*, but the config has several (teachers: "
            f"{', '.join(cfg.teachers)}); multi-teacher configs train and cache (kdlab train, kdlab cache-teacher), "
            "see docs/multi_teacher.md"
        )
    name, checkpoint = cfg.teacher.name, cfg.teacher.checkpoint
    kwargs, classes = dict(cfg.teacher.kwargs), cfg.teacher.num_classes
    stored: Optional[tuple[str, dict[str, Any], Optional[int]]] = None
    where = ""
    if checkpoint is not None and Path(checkpoint).is_dir():
        run = Path(checkpoint)
        best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
        checkpoint = str(best if best.exists() else last)
        if not Path(checkpoint).exists():
            raise ConfigError(f"teacher.checkpoint={run} is a folder without checkpoints/best.pt or last.pt")
        if (run / "config.yaml").exists():
            model = load_config(run / "config.yaml").model
            stored, where = (model.name, dict(model.kwargs), model.num_classes), f"{run / 'config.yaml'}"
    elif checkpoint is not None and Path(checkpoint).is_file():
        stored, where = _architecture_from_checkpoint(checkpoint), f"the checkpoint {checkpoint}"
    if stored is not None:
        stored_name, stored_kwargs, stored_classes = stored
        name = _checked_name(name, stored_name, where)
        kwargs = {**stored_kwargs, **kwargs}
        classes = classes or stored_classes
    if name is None:
        if checkpoint is None:
            raise ConfigError("teacher.name is not set (and no teacher.checkpoint: a kdlab run folder or checkpoint)")
        if not Path(checkpoint).exists():
            raise ConfigError(f"teacher.checkpoint={checkpoint}: file not found")
        raise ConfigError(
            f"teacher.name is not set and teacher.checkpoint={checkpoint} is not a kdlab checkpoint "
            "(it stores no config): set teacher.name to its architecture"
        )
    if checkpoint is None:
        raise ConfigError(f"teacher {name}: teacher.checkpoint is required (a teacher must be trained)")
    if not Path(checkpoint).exists():
        raise ConfigError(f"teacher.checkpoint={checkpoint}: file not found")
    return name, checkpoint, kwargs, classes


# ----------------------------------------------------------------- several teachers (``teachers:``)
#: the value of a loss term's ``teacher:`` that selects the weighted mean of every teacher's logits
TEACHER_MEAN = "mean"
#: a teacher key: what a term's ``teacher:`` names, a folder name of its cache, an override path part
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_ENTRY_KEYS = tuple(f.name for f in dataclasses.fields(TeacherEntry))


def _teacher_items(raw: Any) -> list[tuple[Any, Any, str]]:
    """(key, entry, where) of each configured teacher, from the mapping or the list form."""
    items: list[tuple[Any, Any, str]] = []
    if isinstance(raw, dict):
        for key, entry in raw.items():
            where = f"teachers.{key}"
            if isinstance(entry, dict) and "key" in entry:
                raise ConfigError(
                    f"{where}.key: in the mapping form the mapping key ({key!r}) is the teacher's key; remove key"
                )
            items.append((key, {} if entry is None else entry, where))
        return items
    if isinstance(raw, (list, tuple)):
        for i, entry in enumerate(raw):
            where = f"teachers[{i}]"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} must be a mapping {{key, name, checkpoint, weight, ...}}, got {entry!r}")
            entry = dict(entry)
            key = entry.pop("key", None)
            if key is None:
                name = entry.get("name")
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"{where} needs a key (what loss terms select it by) or a name to take it from")
                key = re.sub(r"[^A-Za-z0-9_-]", "_", name)  # e.g. tv:resnet50 -> tv_resnet50
            items.append((key, entry, where))
        return items
    raise ConfigError(
        "teachers must be a mapping {KEY: {name, checkpoint, weight, ...}} or a list [{key, name, checkpoint, "
        f"weight, ...}}], got {raw!r} ({type(raw).__name__})"
    )


def _teacher_entry(entry: Any, where: str) -> TeacherEntry:
    """One teacher's mapping validated against the schema (every teacher.* key, plus weight)."""
    from kdlab.config.loader import _build  # the schema's own validation: types, ranges, choices

    if isinstance(entry, TeacherEntry):
        return entry
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping {{name, checkpoint, weight, ...}}, got {entry!r}")
    for name in entry:
        if name not in _ENTRY_KEYS:
            close = difflib.get_close_matches(str(name), _ENTRY_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where}.{name}: not a teacher key{hint}; valid: {', '.join(_ENTRY_KEYS)}")
    return _build(TeacherEntry, entry, prefix=f"{where}.")


def checked_teachers(cfg: Config) -> dict[str, TeacherEntry]:
    """``teachers`` validated and normalised to an ordered mapping key -> :class:`TeacherEntry`.

    Either form is accepted: a mapping ``{KEY: {...}}`` or a list ``[{key, ...}]`` (a missing key is the
    name, with characters other than letters, digits, ``_`` and ``-`` as ``_``). Keys are distinct, never
    ``mean`` nor a number (a term's ``teacher:`` takes those). Weights are given for every teacher or
    for none (equal shares). ``teachers`` excludes any ``teacher.*`` setting, and is for classification.
    """
    raw = {} if cfg.teachers is None else cfg.teachers
    items = _teacher_items(raw)
    if not items:
        return {}
    if cfg.task != "classification":
        raise ConfigError(
            f"teachers: several teachers are for task: classification; task: {cfg.task} distils from one (teacher.*)"
        )
    set_in_teacher = [f.name for f in dataclasses.fields(TeacherConfig)
                      if getattr(cfg.teacher, f.name) != getattr(TeacherConfig(), f.name)]
    if set_in_teacher:
        first = set_in_teacher[0]
        raise ConfigError(
            f"teacher.{first} and teachers are both set: a run has one `teacher` or several `teachers`, not both "
            f"(set {first} in the teachers entries)"
        )
    entries: dict[str, TeacherEntry] = {}
    for key, entry, where in items:
        if key == TEACHER_MEAN:
            raise ConfigError(f"{where}: the teacher key {TEACHER_MEAN!r} is taken: a term's `teacher: {TEACHER_MEAN}` "
                              "selects the weighted mean of the teachers' logits; choose another key")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigError(
                f"{where}: teacher key {key!r} must start with a letter or _ and hold only letters, digits, _ and - "
                "(a number would read as an index in a term's `teacher:`)"
            )
        if key in entries:
            raise ConfigError(f"{where}: teacher key {key!r} is used twice; give each teacher a distinct key")
        entries[key] = _teacher_entry(entry, where)
    weights = [entry.weight for entry in entries.values()]
    if any(w is None for w in weights) and not all(w is None for w in weights):
        unset = [key for key, entry in entries.items() if entry.weight is None]
        raise ConfigError(
            f"teachers: weight is set for some teachers but not for {', '.join(unset)}; set every teacher's "
            "weight or none (equal shares)"
        )
    if weights[0] is not None and not (math.fsum(weights) > 0):  # type: ignore[arg-type]
        raise ConfigError("teachers: the weights sum to 0; at least one teacher needs a positive weight")
    return entries


def teacher_weights(cfg: Config) -> dict[str, float]:
    """Each teacher's share in ``teacher: mean``: its ``weight`` over their sum (equal shares when unset)."""
    raw = {key: (1.0 if entry.weight is None else float(entry.weight)) for key, entry in cfg.teachers.items()}
    total = math.fsum(raw.values())
    return {key: value / total for key, value in raw.items()}


def single_teacher_view(cfg: Config, key: str) -> Config:
    """``cfg`` as a run with only teacher ``key`` (as ``teacher.*``, its weight dropped).

    What the single-teacher code reads of that teacher (source, re-normalisation, precision, cache key,
    SSKD's head) comes out of it unchanged, so every teacher is built and keyed exactly as if alone.
    """
    if key not in cfg.teachers:
        raise ConfigError(f"no teacher {key!r}; teachers: {', '.join(cfg.teachers) or '(none)'}")
    entry = cfg.teachers[key]
    teacher = TeacherConfig(**{f.name: getattr(entry, f.name) for f in dataclasses.fields(TeacherConfig)})
    return dataclasses.replace(cfg, teacher=teacher, teachers={})
