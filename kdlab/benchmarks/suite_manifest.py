"""The manifest of a benchmark suite: ``suite.yaml`` in the suite's folder.

A suite folder holds ordinary kdlab configs (one per method, a teacher fine-tune
config, their ``_base_`` files) and ``suite.yaml``, which says what to run::

    name: cifar10_cpu
    title: "..."
    seeds: 3                      # default of --seeds
    jobs: 2                       # default of --jobs: runs trained side by side (worker processes)
    baseline: student             # the method every gain is measured against (unless a method names its own)
    overrides: [data.subset=10000]  # optional: key=value for every run, the teacher's too (before the method's)
    teacher:
      config: teacher.yaml        # supervised fine-tune config; model.checkpoint = pretrained weights
      finetune: true              # false: distil from the pretrained weights
      evaluate_pretrained: true   # top-1 of the pretrained weights before fine-tuning
    methods:                      # run order = table order
      - {name: student, config: student.yaml}
      - {name: kd, config: kd.yaml, teacher_cache: true}
      - {name: student-25pc, config: student.yaml, overrides: [data.subset=2500]}
      - {name: kd-25pc, config: kd.yaml, overrides: [data.subset=2500], baseline: student-25pc}
    mini:                         # --mini: the smoke-test version
      seeds: 1
      jobs: 1
      methods: [student, kd]
      teacher: {finetune: false, evaluate_pretrained: false}
      overrides: [data.subset=256, trainer.epochs=1]
    inherit:                      # optional: robustness / transfer / retrieval of chosen rows after training
      methods: [teacher, student, kd]   # (kdlab.benchmarks.suite_inherit)
      corruptions: all
      retrieval: true
    dataset:                      # optional: a dataset the suite makes first, into <out>/data
      make_detection: {source: ../shared/data/cifar10-jpg.zip, seed: 0, train: 1500, canvas: 64}
    published:                    # optional: what the report compares with (kdlab.benchmarks.suite_published)
      source: "..."
      top1: {kd: 70.66, ...}
      order: [[kd, crd], ...]     # a below b in the published tables

Per method:

- ``baseline: NAME`` — the method whose rows this one's ``gain`` is measured against
  (default: the suite's ``baseline``); ``kd-25pc`` against ``student-25pc``. A method may
  name itself (its gain is then 0).
- ``overrides: [key=value, ...]`` — applied to this method's runs (not the teacher's) after
  the suite's ``overrides`` and before ``--mini``'s and the command line's (which therefore win).
- ``teacher_cache: true`` — the method reads a per-seed teacher-output cache.

**Pairs.** A suite may run every method on several teacher -> student pairs::

    pairs:
      - {teacher: resnet56, student: resnet20}            # name: resnet56_resnet20
      - {teacher: wrn_40_2, student: wrn_16_2, name: wrn}  # name given explicitly
    teacher: {evaluate_pretrained: true}
    methods:
      - {name: student, config: "student/{student}.yaml"}
      - {name: kd, config: "../../configs/cifar100/kd/{pair}.yaml"}
      - {name: ckd, config: "../../configs/cifar100/ckd/{pair}.yaml",
         overrides: [trainer.epochs=240, schedule.name=step]}
    mini: {pairs: [resnet56_resnet20], ...}

Config paths and overrides may hold ``{pair}``, ``{teacher}`` and ``{student}`` (quote
them inside a YAML ``{...}`` mapping). A (method, pair) whose config file does not exist
is *absent* (listed, not an error); a method without a config for any pair is an error. Runs whose config and overrides
name the same file for two pairs (``student/{student}.yaml`` for two pairs with the
same student) are trained once and reported in both. With pairs there is no suite
teacher: each recipe's ``teacher.checkpoint`` is its teacher, no fine-tune, and
``evaluate_pretrained`` evaluates each distinct teacher once. ``published.tables``
holds the published number per (method, pair) with its source.

Config paths are relative to the suite folder. Errors are :class:`SuiteError`
naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from kdlab.benchmarks.suite_inherit import InheritSpec, parse_inherit
from kdlab.benchmarks.suite_published import PublishedReference, PublishedTable, parse_published
from kdlab.benchmarks.suite_values import (
    SuiteError,
    flag,
    folder_name,
    mapping,
    names,
    overrides,
    placeholders,
    positive,
    string_value,
    where,
)

MANIFEST_FILE = "suite.yaml"
TEACHER = "teacher"

__all__ = [
    "MANIFEST_FILE",
    "TEACHER",
    "DatasetSpec",
    "MethodSpec",
    "MiniSpec",
    "PairSpec",
    "PublishedReference",
    "PublishedTable",
    "SuiteError",
    "SuiteManifest",
    "TeacherSpec",
    "load_manifest",
    "select_methods",
    "select_pairs",
]


@dataclass(frozen=True)
class PairSpec:
    """One teacher -> student pair of a suite with ``pairs:``."""

    name: str
    teacher: str
    student: str

    def values(self) -> dict[str, str]:
        """What the placeholders of a config path or an override stand for."""
        return {"pair": self.name, "teacher": self.teacher, "student": self.student}


@dataclass(frozen=True)
class MethodSpec:
    """One method of the suite: its result name, its config (or config template) and how it runs."""

    name: str
    config: Path  # the config file; with a template, the unformatted path (for display)
    teacher_cache: bool = False
    baseline: Optional[str] = None  # the method its gain is measured against (None: the suite's baseline)
    overrides: tuple[str, ...] = ()
    template: Optional[str] = None  # the config path relative to the suite folder, with placeholders
    fields: frozenset[str] = frozenset()  # the placeholders its config path and overrides use
    folder: Optional[Path] = None  # the suite folder the template is relative to

    def config_for(self, pair: PairSpec) -> Path:
        """The config file of this method on ``pair`` (it may not exist: the method is absent there)."""
        if self.template is None or self.folder is None:
            return self.config
        return self.folder / self.template.format(**pair.values())

    def overrides_for(self, pair: Optional[PairSpec]) -> tuple[str, ...]:
        if pair is None or not self.fields:
            return self.overrides
        return tuple(o.format(**pair.values()) for o in self.overrides)

    def instance(self, pair: PairSpec) -> str:
        """The folder of this method's runs for ``pair``; pairs that give the same config share one."""
        if "pair" in self.fields or {"teacher", "student"} <= self.fields:
            return pair.name
        if "student" in self.fields:
            return pair.student
        if "teacher" in self.fields:
            return pair.teacher
        return "all"


@dataclass(frozen=True)
class TeacherSpec:
    """How the suite prepares its teacher (with pairs: no config, no fine-tune; the recipes name the teachers)."""

    config: Optional[Path]
    finetune: bool = True
    evaluate_pretrained: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the suite makes before anything trains (``kdlab data make-detection``), into ``<out>/data``."""

    source: str
    options: dict[str, Any] = field(default_factory=dict)  # MakeDetectionOptions fields


@dataclass(frozen=True)
class MiniSpec:
    """The ``--mini`` variant: fewer seeds, methods and pairs, overrides that shrink every run."""

    seeds: int = 1
    jobs: int = 1
    methods: tuple[str, ...] = ()
    finetune: bool = False
    evaluate_pretrained: bool = False
    overrides: tuple[str, ...] = ()
    dataset: dict[str, Any] = field(default_factory=dict)  # make_detection options that replace the full suite's
    pairs: tuple[str, ...] = ()


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
    pairs: tuple[PairSpec, ...] = ()
    overrides: tuple[str, ...] = ()
    inherit: Optional[InheritSpec] = None  # robustness / transfer / retrieval after training (suite_inherit)

    @property
    def method_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods)

    @property
    def pair_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pairs)

    def method(self, name: str) -> MethodSpec:
        for spec in self.methods:
            if spec.name == name:
                return spec
        raise SuiteError(f"method {name!r} is not in {self.folder / MANIFEST_FILE}; its methods: {', '.join(self.method_names)}")

    def baseline_of(self, method: str) -> str:
        """The method ``method``'s gain is measured against."""
        return self.method(method).baseline or self.baseline


# ---------------------------------------------------------------------------------------------- methods
_METHOD_KEYS = {"name", "config", "teacher_cache", "baseline", "overrides"}


def _config_file(folder: Path, value: Any, path: Path, key: str) -> Path:
    name = string_value(value, path, key)
    config = folder / name
    if not config.is_file():
        raise SuiteError(f"{where(path, key)}={name!r}: no such config file {config}")
    return config


def _method(folder: Path, raw: Any, path: Path, index: int, pairs: tuple[PairSpec, ...]) -> MethodSpec:
    key = f"methods[{index}]"
    entry = mapping(raw, path, key)
    unknown = sorted(set(entry) - _METHOD_KEYS)
    if unknown:
        raise SuiteError(f"{where(path, key)}: unknown key(s) {unknown}; allowed: {sorted(_METHOD_KEYS)}")
    name = string_value(entry.get("name"), path, f"{key}.name")
    if name == TEACHER or "/" in name or name.startswith("."):
        raise SuiteError(f"{where(path, key)}.name={name!r} is reserved or not usable as a folder name")
    cache = flag(entry.get("teacher_cache", False), path, f"{key}.teacher_cache")
    baseline = entry.get("baseline")
    if baseline is not None:
        baseline = string_value(baseline, path, f"{key}.baseline")
    extra = overrides(entry.get("overrides"), path, f"{key}.overrides")
    text = string_value(entry.get("config"), path, f"{key}.config")
    fields = placeholders(text, path, f"{key}.config")
    for i, override in enumerate(extra):
        fields |= placeholders(override, path, f"{key}.overrides[{i}]")
    if fields and not pairs:
        raise SuiteError(f"{where(path, key)}: {{pair}}, {{teacher}} and {{student}} need the suite's pairs: list")
    if not fields:
        return MethodSpec(name, _config_file(folder, text, path, f"{key}.config"), cache, baseline, extra)
    spec = MethodSpec(name, folder / text, cache, baseline, extra, template=text, fields=fields, folder=folder)
    if not any(spec.config_for(pair).is_file() for pair in pairs):
        first = spec.config_for(pairs[0])
        raise SuiteError(f"{where(path, key)}.config={text!r}: no config file for any pair (e.g. {first})")
    return spec


def _methods(folder: Path, data: dict[str, Any], path: Path, pairs: tuple[PairSpec, ...]) -> tuple[MethodSpec, ...]:
    raw_methods = data.get("methods")
    if not isinstance(raw_methods, list) or not raw_methods:
        raise SuiteError(f"{where(path, 'methods')} must be a non-empty list of {{name, config}} entries")
    methods = tuple(_method(folder, raw, path, i, pairs) for i, raw in enumerate(raw_methods))
    found = [m.name for m in methods]
    duplicates = sorted({n for n in found if found.count(n) > 1})
    if duplicates:
        raise SuiteError(f"{where(path, 'methods')} lists {duplicates} more than once")
    for i, spec in enumerate(methods):
        if spec.baseline is not None and spec.baseline not in found:
            raise SuiteError(f"{where(path, f'methods[{i}].baseline')}={spec.baseline!r} is not one of the methods {found}")
    return methods


# ---------------------------------------------------------------------------------------------- pairs
def _pairs(raw: Any, path: Path) -> tuple[PairSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise SuiteError(f"{where(path, 'pairs')} must be a non-empty list of {{teacher, student}} entries, got {raw!r}")
    pairs = []
    for index, item in enumerate(raw):
        key = f"pairs[{index}]"
        entry = mapping(item, path, key)
        unknown = sorted(set(entry) - {"teacher", "student", "name"})
        if unknown:
            raise SuiteError(f"{where(path, key)}: unknown key(s) {unknown}; allowed: ['name', 'student', 'teacher']")
        teacher = string_value(entry.get("teacher"), path, f"{key}.teacher")
        student = string_value(entry.get("student"), path, f"{key}.student")
        name = folder_name(string_value(entry.get("name", f"{teacher}_{student}"), path, f"{key}.name"), path, f"{key}.name")
        pairs.append(PairSpec(name, teacher, student))
    found = [p.name for p in pairs]
    duplicates = sorted({n for n in found if found.count(n) > 1})
    if duplicates:
        raise SuiteError(f"{where(path, 'pairs')} lists {duplicates} more than once")
    return tuple(pairs)


def _teacher(raw: Any, folder: Path, path: Path, paired: bool) -> TeacherSpec:
    teacher = mapping(raw, path, "teacher")
    evaluate = flag(teacher.get("evaluate_pretrained", True), path, "teacher.evaluate_pretrained")
    if paired:
        if "config" in teacher or teacher.get("finetune", False):
            raise SuiteError(f"{where(path, 'teacher')}: with pairs: each recipe's teacher.checkpoint is its teacher; "
                             "teacher.config and teacher.finetune are not supported (only evaluate_pretrained)")
        unknown = sorted(set(teacher) - {"evaluate_pretrained", "finetune"})
        if unknown:
            raise SuiteError(f"{where(path, 'teacher')}: unknown key(s) {unknown}; allowed with pairs: evaluate_pretrained")
        return TeacherSpec(None, False, evaluate)
    if "config" not in teacher:
        raise SuiteError(f"{where(path, 'teacher.config')} is required (the teacher's fine-tune config)")
    return TeacherSpec(
        config=_config_file(folder, teacher.get("config"), path, "teacher.config"),
        finetune=flag(teacher.get("finetune", True), path, "teacher.finetune"),
        evaluate_pretrained=evaluate,
    )


def _chosen(entry: dict[str, Any], key: str, known: tuple[str, ...], default: list[str], path: Path, what: str) -> tuple[str, ...]:
    chosen = names(entry.get(key, default), path, f"mini.{key}", what)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise SuiteError(f"{where(path, f'mini.{key}')} names {unknown}, not among the {what} {list(known)}")
    return chosen


def _mini(raw: Any, path: Path, methods: tuple[str, ...], pairs: tuple[str, ...]) -> MiniSpec:
    entry = mapping(raw, path, "mini")
    teacher = mapping(entry.get("teacher"), path, "mini.teacher")
    if "pairs" in entry and not pairs:
        raise SuiteError(f"{where(path, 'mini.pairs')}: the suite has no pairs:")
    return MiniSpec(
        seeds=positive(entry.get("seeds", 1), path, "mini.seeds"),
        jobs=positive(entry.get("jobs", 1), path, "mini.jobs"),
        methods=_chosen(entry, "methods", methods, list(methods[:2]), path, "methods"),
        finetune=flag(teacher.get("finetune", False), path, "mini.teacher.finetune"),
        evaluate_pretrained=flag(teacher.get("evaluate_pretrained", False), path, "mini.teacher.evaluate_pretrained"),
        overrides=overrides(entry.get("overrides", []), path, "mini.overrides"),
        dataset=dict(mapping(entry.get("dataset"), path, "mini.dataset")),
        pairs=_chosen(entry, "pairs", pairs, list(pairs[:1]), path, "pairs") if pairs else (),
    )


_TOP_KEYS = {"name", "title", "seeds", "jobs", "baseline", "teacher", "methods", "mini", "published", "dataset",
             "pairs", "overrides", "inherit"}


def _dataset(raw: Any, path: Path) -> Optional[DatasetSpec]:
    if raw is None:
        return None
    from dataclasses import fields

    from kdlab.data.detection import MakeDetectionOptions

    entry = mapping(raw, path, "dataset")
    if set(entry) != {"make_detection"}:
        raise SuiteError(f"{where(path, 'dataset')} must hold exactly one key, make_detection, got {sorted(entry)}")
    make = dict(mapping(entry["make_detection"], path, "dataset.make_detection"))
    source = string_value(make.pop("source", None), path, "dataset.make_detection.source")
    allowed = {f.name for f in fields(MakeDetectionOptions)}
    unknown = sorted(set(make) - allowed)
    if unknown:
        raise SuiteError(f"{where(path, 'dataset.make_detection')}: unknown key(s) {unknown}; allowed: "
                         f"source, {', '.join(sorted(allowed))}")
    return DatasetSpec(source, make)


def _read(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise SuiteError(f"suite folder {folder} does not exist (expected a folder holding {MANIFEST_FILE})")
    if not path.is_file():
        raise SuiteError(f"{folder} is not a benchmark suite: {MANIFEST_FILE} is missing")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SuiteError(f"{path} is not valid YAML: {err}") from None
    data = mapping(data, path, "the manifest")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    return path, data


def load_manifest(folder: str | Path) -> SuiteManifest:
    """Read and validate ``<folder>/suite.yaml``."""
    folder = Path(folder)
    path, data = _read(folder)
    pairs = _pairs(data.get("pairs"), path)
    if pairs and data.get("dataset") is not None:
        raise SuiteError(f"{where(path, 'dataset')}: not supported together with pairs:")
    methods = _methods(folder, data, path, pairs)
    found = tuple(m.name for m in methods)
    baseline = string_value(data.get("baseline", found[0]), path, "baseline")
    if baseline not in found:
        raise SuiteError(f"{where(path, 'baseline')}={baseline!r} is not one of the methods {list(found)}")
    pair_names = tuple(p.name for p in pairs)
    return SuiteManifest(
        folder=folder,
        name=string_value(data.get("name", folder.name), path, "name"),
        title=str(data.get("title", data.get("name", folder.name))),
        seeds=positive(data.get("seeds", 1), path, "seeds"),
        jobs=positive(data.get("jobs", 1), path, "jobs"),
        baseline=baseline,
        teacher=_teacher(data.get("teacher"), folder, path, bool(pairs)),
        methods=methods,
        mini=_mini(data.get("mini"), path, found, pair_names),
        published=parse_published(data.get("published"), path, pair_names, found),
        dataset=_dataset(data.get("dataset"), path),
        pairs=pairs,
        overrides=overrides(data.get("overrides"), path, "overrides"),
        inherit=_inherit(data.get("inherit"), path, found, bool(pairs)),
    )


def _inherit(raw: Any, path: Path, methods: tuple[str, ...], paired: bool) -> Optional[InheritSpec]:
    if raw is not None and paired:
        raise SuiteError(f"{where(path, 'inherit')}: not supported together with pairs: yet")
    return parse_inherit(raw, path, methods)


# ---------------------------------------------------------------------------------------------- selection
def _select(known: tuple[str, ...], wanted: tuple[str, ...], flag_name: str, folder: Path, example: str) -> None:
    if not wanted:
        raise SuiteError(f"{flag_name} is empty: name at least one, e.g. {flag_name} {example}")
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise SuiteError(
            f"{flag_name}: {', '.join(unknown)} not in {folder / MANIFEST_FILE}; choose from {', '.join(known)}"
        )
    duplicates = sorted({m for m in wanted if wanted.count(m) > 1})
    if duplicates:
        raise SuiteError(f"{flag_name} lists {duplicates} more than once")


def select_methods(manifest: SuiteManifest, wanted: Optional[tuple[str, ...]]) -> tuple[MethodSpec, ...]:
    """The manifest's methods named in ``wanted`` (in manifest order), or all of them."""
    if wanted is None:
        return manifest.methods
    if not wanted:
        raise SuiteError("--methods is empty: name at least one method, e.g. --methods student kd")
    _select(manifest.method_names, wanted, "--methods", manifest.folder, "student kd")
    return tuple(spec for spec in manifest.methods if spec.name in wanted)


def select_pairs(manifest: SuiteManifest, wanted: Optional[tuple[str, ...]]) -> tuple[PairSpec, ...]:
    """The manifest's pairs named in ``wanted`` (in manifest order), or all of them."""
    if wanted is None:
        return manifest.pairs
    if not manifest.pairs:
        raise SuiteError(f"--pairs: {manifest.folder / MANIFEST_FILE} has no pairs: (one teacher and student)")
    _select(manifest.pair_names, wanted, "--pairs", manifest.folder, manifest.pair_names[0])
    return tuple(pair for pair in manifest.pairs if pair.name in wanted)
