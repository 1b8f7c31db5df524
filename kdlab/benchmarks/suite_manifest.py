"""The manifest of a benchmark suite: ``suite.yaml`` in the suite's folder.

A suite folder holds ordinary kdlab configs (one per method, a teacher fine-tune
config, their ``_base_`` files) and ``suite.yaml``, which says what to run::

    name: cifar10_cpu
    title: "..."
    seeds: 3                      # default of --seeds
    jobs: 2                       # default of --jobs: runs trained side by side (worker processes)
    baseline: student             # the method every gain is measured against
    teacher:
      config: teacher.yaml        # supervised fine-tune config; model.checkpoint = pretrained weights
      finetune: true              # false: distil from the pretrained weights
      evaluate_pretrained: true   # top-1 of the pretrained weights before fine-tuning
    methods:                      # run order = table order
      - {name: student, config: student.yaml}
      - {name: kd, config: kd.yaml, teacher_cache: true}
    mini:                         # --mini: the smoke-test version
      seeds: 1
      jobs: 1
      methods: [student, kd]
      teacher: {finetune: false, evaluate_pretrained: false}
      overrides: [data.subset=256, trainer.epochs=1]
    dataset:                      # optional: a dataset the suite makes first, into <out>/data
      make_detection: {source: ../shared/data/cifar10-jpg.zip, seed: 0, train: 1500, canvas: 64}
    published:                    # optional: what the report compares the ordering with
      source: "..."
      top1: {kd: 70.66, ...}
      order: [[kd, crd], ...]     # a below b in the published tables

Config paths are relative to the suite folder. Errors are :class:`SuiteError`
naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from kdlab.config import ConfigError

MANIFEST_FILE = "suite.yaml"
TEACHER = "teacher"


class SuiteError(ConfigError):
    """The suite cannot run as asked (manifest, option, missing file); the message says what to fix."""


@dataclass(frozen=True)
class MethodSpec:
    """One method of the suite: its result name, its config and whether it reads a teacher cache."""

    name: str
    config: Path
    teacher_cache: bool = False


@dataclass(frozen=True)
class TeacherSpec:
    """How the suite prepares its teacher."""

    config: Path
    finetune: bool = True
    evaluate_pretrained: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the suite makes before anything trains (``kdlab data make-detection``), into ``<out>/data``."""

    source: str
    options: dict[str, Any] = field(default_factory=dict)  # MakeDetectionOptions fields


@dataclass(frozen=True)
class MiniSpec:
    """The ``--mini`` variant: fewer seeds and methods, overrides that shrink every run."""

    seeds: int = 1
    jobs: int = 1
    methods: tuple[str, ...] = ()
    finetune: bool = False
    evaluate_pretrained: bool = False
    overrides: tuple[str, ...] = ()
    dataset: dict[str, Any] = field(default_factory=dict)  # make_detection options that replace the full suite's


@dataclass(frozen=True)
class PublishedReference:
    """Published numbers the measured ordering is compared with."""

    source: str = ""
    top1: dict[str, float] = field(default_factory=dict)
    order: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SuiteManifest:
    """A parsed, validated ``suite.yaml``."""

    folder: Path
    name: str
    title: str
    seeds: int
    jobs: int
    baseline: str
    teacher: TeacherSpec
    methods: tuple[MethodSpec, ...]
    mini: MiniSpec
    published: PublishedReference
    dataset: Optional[DatasetSpec] = None

    @property
    def method_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods)

    def method(self, name: str) -> MethodSpec:
        for spec in self.methods:
            if spec.name == name:
                return spec
        raise SuiteError(f"method {name!r} is not in {self.folder / MANIFEST_FILE}; its methods: {', '.join(self.method_names)}")


def _where(path: Path, key: str) -> str:
    return f"{path}: {key}"


def _mapping(value: Any, path: Path, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"{_where(path, key)} must be a mapping, got {value!r}")
    return value


def _string(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SuiteError(f"{_where(path, key)} must be a non-empty string, got {value!r}")
    return value


def _flag(value: Any, path: Path, key: str) -> bool:
    if not isinstance(value, bool):
        raise SuiteError(f"{_where(path, key)} must be true or false, got {value!r}")
    return value


def _seeds(value: Any, path: Path, key: str) -> int:
    """A positive integer (seeds, jobs)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SuiteError(f"{_where(path, key)} must be an integer >= 1, got {value!r}")
    return value


def _names(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SuiteError(f"{_where(path, key)} must be a list of method names, got {value!r}")
    return tuple(value)


def _config_file(folder: Path, value: Any, path: Path, key: str) -> Path:
    name = _string(value, path, key)
    config = folder / name
    if not config.is_file():
        raise SuiteError(f"{_where(path, key)}={name!r}: no such config file {config}")
    return config


_METHOD_KEYS = {"name", "config", "teacher_cache"}


def _method(folder: Path, raw: Any, path: Path, index: int) -> MethodSpec:
    key = f"methods[{index}]"
    entry = _mapping(raw, path, key)
    unknown = sorted(set(entry) - _METHOD_KEYS)
    if unknown:
        raise SuiteError(f"{_where(path, key)}: unknown key(s) {unknown}; allowed: {sorted(_METHOD_KEYS)}")
    name = _string(entry.get("name"), path, f"{key}.name")
    if name == TEACHER or "/" in name or name.startswith("."):
        raise SuiteError(f"{_where(path, key)}.name={name!r} is reserved or not usable as a folder name")
    config = _config_file(folder, entry.get("config"), path, f"{key}.config")
    cache = _flag(entry.get("teacher_cache", False), path, f"{key}.teacher_cache")
    return MethodSpec(name, config, cache)


def _mini(raw: Any, path: Path, methods: tuple[str, ...]) -> MiniSpec:
    entry = _mapping(raw, path, "mini")
    teacher = _mapping(entry.get("teacher"), path, "mini.teacher")
    overrides = entry.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise SuiteError(f"{_where(path, 'mini.overrides')} must be a list of key=value strings, got {overrides!r}")
    chosen = _names(entry.get("methods", list(methods[:2])), path, "mini.methods")
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        raise SuiteError(f"{_where(path, 'mini.methods')} names {unknown}, not among the methods {list(methods)}")
    return MiniSpec(
        seeds=_seeds(entry.get("seeds", 1), path, "mini.seeds"),
        jobs=_seeds(entry.get("jobs", 1), path, "mini.jobs"),
        methods=chosen,
        finetune=_flag(teacher.get("finetune", False), path, "mini.teacher.finetune"),
        evaluate_pretrained=_flag(teacher.get("evaluate_pretrained", False), path, "mini.teacher.evaluate_pretrained"),
        overrides=tuple(overrides),
        dataset=dict(_mapping(entry.get("dataset"), path, "mini.dataset")),
    )


def _published(raw: Any, path: Path) -> PublishedReference:
    entry = _mapping(raw, path, "published")
    top1 = _mapping(entry.get("top1"), path, "published.top1")
    for method, value in top1.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SuiteError(f"{_where(path, f'published.top1.{method}')} must be a number, got {value!r}")
    order = entry.get("order", [])
    if not isinstance(order, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(m, str) for m in pair) for pair in order
    ):
        raise SuiteError(f"{_where(path, 'published.order')} must be a list of [lower, higher] method pairs, got {order!r}")
    source = entry.get("source", "")
    return PublishedReference(
        source=str(source).strip(),
        top1={str(k): float(v) for k, v in top1.items()},
        order=tuple((a, b) for a, b in order),
    )


_TOP_KEYS = {"name", "title", "seeds", "jobs", "baseline", "teacher", "methods", "mini", "published", "dataset"}


def _dataset(raw: Any, path: Path) -> Optional[DatasetSpec]:
    if raw is None:
        return None
    from dataclasses import fields

    from kdlab.data.detection import MakeDetectionOptions

    entry = _mapping(raw, path, "dataset")
    if set(entry) != {"make_detection"}:
        raise SuiteError(f"{_where(path, 'dataset')} must hold exactly one key, make_detection, got {sorted(entry)}")
    make = dict(_mapping(entry["make_detection"], path, "dataset.make_detection"))
    source = _string(make.pop("source", None), path, "dataset.make_detection.source")
    allowed = {f.name for f in fields(MakeDetectionOptions)}
    unknown = sorted(set(make) - allowed)
    if unknown:
        raise SuiteError(f"{_where(path, 'dataset.make_detection')}: unknown key(s) {unknown}; allowed: "
                         f"source, {', '.join(sorted(allowed))}")
    return DatasetSpec(source, make)


def load_manifest(folder: str | Path) -> SuiteManifest:
    """Read and validate ``<folder>/suite.yaml``."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise SuiteError(f"suite folder {folder} does not exist (expected a folder holding {MANIFEST_FILE})")
    if not path.is_file():
        raise SuiteError(f"{folder} is not a benchmark suite: {MANIFEST_FILE} is missing")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SuiteError(f"{path} is not valid YAML: {err}") from None
    data = _mapping(data, path, "the manifest")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    raw_methods = data.get("methods")
    if not isinstance(raw_methods, list) or not raw_methods:
        raise SuiteError(f"{_where(path, 'methods')} must be a non-empty list of {{name, config}} entries")
    methods = tuple(_method(folder, raw, path, i) for i, raw in enumerate(raw_methods))
    names = [m.name for m in methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SuiteError(f"{_where(path, 'methods')} lists {duplicates} more than once")
    baseline = _string(data.get("baseline", names[0]), path, "baseline")
    if baseline not in names:
        raise SuiteError(f"{_where(path, 'baseline')}={baseline!r} is not one of the methods {names}")
    teacher = _mapping(data.get("teacher"), path, "teacher")
    if "config" not in teacher:
        raise SuiteError(f"{_where(path, 'teacher.config')} is required (the teacher's fine-tune config)")
    return SuiteManifest(
        folder=folder,
        name=_string(data.get("name", folder.name), path, "name"),
        title=str(data.get("title", data.get("name", folder.name))),
        seeds=_seeds(data.get("seeds", 1), path, "seeds"),
        jobs=_seeds(data.get("jobs", 1), path, "jobs"),
        baseline=baseline,
        teacher=TeacherSpec(
            config=_config_file(folder, teacher.get("config"), path, "teacher.config"),
            finetune=_flag(teacher.get("finetune", True), path, "teacher.finetune"),
            evaluate_pretrained=_flag(teacher.get("evaluate_pretrained", True), path, "teacher.evaluate_pretrained"),
        ),
        methods=methods,
        mini=_mini(data.get("mini"), path, tuple(names)),
        published=_published(data.get("published"), path),
        dataset=_dataset(data.get("dataset"), path),
    )


def select_methods(manifest: SuiteManifest, wanted: Optional[tuple[str, ...]]) -> tuple[MethodSpec, ...]:
    """The manifest's methods named in ``wanted`` (in manifest order), or all of them."""
    if wanted is None:
        return manifest.methods
    if not wanted:
        raise SuiteError("--methods is empty: name at least one method, e.g. --methods student kd")
    unknown = [m for m in wanted if m not in manifest.method_names]
    if unknown:
        raise SuiteError(
            f"--methods: {', '.join(unknown)} not in {manifest.folder / MANIFEST_FILE}; "
            f"choose from {', '.join(manifest.method_names)}"
        )
    duplicates = sorted({m for m in wanted if wanted.count(m) > 1})
    if duplicates:
        raise SuiteError(f"--methods lists {duplicates} more than once")
    return tuple(spec for spec in manifest.methods if spec.name in wanted)
