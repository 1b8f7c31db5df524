"""From a manifest and the command's options to a :class:`SuitePlan`: every run, resolved and validated.

Planning checks every path and config before anything trains. Problems are collected in
:class:`PlanProblems` (each missing file once, with the runs that need it; every config that
does not validate): ``kdlab bench suite --dry-run`` prints them with the plan, a real run stops
with one :class:`SuiteError` line naming them. Suites with ``pairs:`` are planned by
:mod:`kdlab.benchmarks.suite_pairs`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from kdlab.benchmarks.suite_manifest import (
    TEACHER,
    MethodSpec,
    PairSpec,
    SuiteError,
    SuiteManifest,
    load_manifest,
    select_methods,
)
from kdlab.benchmarks.suite_runs import CACHE_LINK, PlannedRun, shown_path

#: without a fine-tune, students read the pretrained weights through this link in <out>/teacher/, so
#: whatever a method stores beside its teacher (SSKD's head) lands in the suite's folder, never beside
#: the shared weights
PRETRAINED_LINK = "pretrained.th"
#: ``--dry-run`` exit codes: configs that do not validate / files that are missing (0: ready to run)
EXIT_INVALID = 2
EXIT_MISSING = 4


# ---------------------------------------------------------------------------------------------- options
@dataclass
class SuiteOptions:
    """What ``kdlab bench suite`` runs; ``None`` means the manifest's (or ``--mini``'s) value."""

    suite_dir: Path
    out_dir: Optional[Path] = None  # default: runs/bench/<name> (or <name>-mini)
    seeds: Optional[int] = None
    methods: Optional[tuple[str, ...]] = None
    jobs: Optional[int] = None  # runs side by side (worker processes)
    mini: bool = False
    overrides: tuple[str, ...] = ()  # key=value applied to every run (teacher fine-tune included)
    teacher_checkpoint: Optional[Path] = None  # pretrained teacher weights instead of the config's
    teacher_cache: bool = True  # False: every method runs the teacher live
    fresh: bool = False  # delete the suite's previous runs first
    keep_going: bool = True  # a failing run is recorded and the suite continues
    doc: Optional[Path] = None  # also write the Markdown report here
    results_json: Optional[Path] = None  # also write the rows here
    verbose: bool = False  # the trainer's per-epoch lines
    command: str = "kdlab bench suite"
    pairs: Optional[tuple[str, ...]] = None  # suites with pairs: run only these
    report_only: bool = False  # train nothing: the report of the runs already finished in out_dir
    previous: Optional[Path] = None  # with report_only: an earlier results.json whose rows stand for unrun methods


# ---------------------------------------------------------------------------------------------- problems
@dataclass
class MissingFile:
    """A file or folder a config names that does not exist."""

    what: str  # the key, e.g. data.root
    given: str  # the value as written
    resolved: Path
    source: str  # the first config (or option) naming it
    hint: str
    users: list[str] = field(default_factory=list)  # what needs it (methods, pairs)

    def needed_by(self) -> str:
        """``kd, crd on resnet56_resnet20`` / ``13 methods on 11 pairs`` (users are ``method`` or ``method/pair``)."""
        def some(names: list[str], noun: str) -> str:
            unique = list(dict.fromkeys(names))
            return ", ".join(unique) if len(unique) <= 3 else f"{len(unique)} {noun}s"

        parts = [user.split("/", 1) for user in self.users]
        text = some([p[0] for p in parts], "method")
        pairs = [p[1] for p in parts if len(p) == 2]
        return text + (f" on {some(pairs, 'pair')}" if pairs else "")

    def line(self) -> str:
        users = f"; needed by {self.needed_by()}" if self.users else ""
        return f"{self.what}={self.given} (from {self.source}) -> {self.resolved}{users}. {self.hint}".rstrip()


@dataclass
class PlanProblems:
    """What stops the suite from running: missing files (each once) and configs that do not validate."""

    missing: dict[str, MissingFile] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)

    def add_missing(self, what: str, given: Any, resolved: Path, source: Any, hint: str, user: str = "") -> None:
        entry = self.missing.setdefault(str(resolved), MissingFile(what, str(given), resolved, str(source), hint))
        if user and user not in entry.users:
            entry.users.append(user)

    @property
    def exit_code(self) -> int:
        """0 (ready), :data:`EXIT_INVALID` (a config does not validate) or :data:`EXIT_MISSING` (files missing)."""
        if self.invalid:
            return EXIT_INVALID
        return EXIT_MISSING if self.missing else 0

    def error(self) -> Optional[SuiteError]:
        """One SuiteError naming every problem (None when there is none)."""
        if self.missing:
            entries = list(self.missing.values())
            if len(entries) == 1:
                only = entries[0]
                return SuiteError(f"{only.what}={only.given} (from {only.source}, resolved against the working "
                                  f"directory {Path.cwd()}) does not exist: {only.resolved}. {only.hint}")
            listed = "; ".join(f"{m.what}={m.given} -> {m.resolved}" for m in entries)
            return SuiteError(f"{len(entries)} files the suite needs do not exist (resolved against {Path.cwd()}): "
                              f"{listed}. Put them there, or run --dry-run for what needs each")
        if self.invalid:
            if len(self.invalid) == 1:
                return SuiteError(self.invalid[0])
            return SuiteError(f"{len(self.invalid)} configs do not validate: " + "; ".join(self.invalid))
        return None


@dataclass(frozen=True)
class AbsentRun:
    """A (method, pair) the suite cannot run: the method has no config for that pair."""

    method: str
    pair: str
    config: Path


@dataclass
class TeacherEval:
    """Suites with pairs: one distinct teacher of the recipes, evaluated once and linked into the suite's folder."""

    label: str
    checkpoint: Path  # the recipe's teacher.checkpoint, resolved (it may be missing in a dry run)
    link: Path  # <out>/teachers/<label>/<file name> -> checkpoint; what the students distil from
    config: Path  # the recipe the evaluation reads its data settings from
    overrides: tuple[str, ...]  # that recipe turned into the teacher's evaluation config
    pairs: list[str] = field(default_factory=list)

    @property
    def out_file(self) -> Path:
        return self.link.parent / "pretrained.json"

    def command(self) -> str:
        shown = [o for o in self.overrides if not o.startswith("trainer.progress=")]
        return " ".join(["kdlab eval", shown_path(self.config), *shown, "--checkpoint", str(self.checkpoint)])


# ---------------------------------------------------------------------------------------------- the plan
@dataclass
class SuitePlan:
    """Everything the suite will do, resolved and validated before anything trains."""

    manifest: SuiteManifest
    options: SuiteOptions
    out_dir: Path
    seeds: int
    jobs: int
    methods: tuple[MethodSpec, ...]
    pretrained: Optional[Path]  # the pretrained teacher weights (None with pairs: see teachers)
    teacher_overrides: tuple[str, ...]  # the teacher config's overrides (pretrained weights, data path)
    evaluate_pretrained: bool
    teacher_run: Optional[PlannedRun]  # the fine-tune, or None (distil from the pretrained weights)
    runs: list[PlannedRun] = field(default_factory=list)
    with_prerequisites: tuple[str, ...] = ()  # run groups whose terms need a run first (SSKD's teacher head)
    pairs: tuple[PairSpec, ...] = ()
    teachers: list[TeacherEval] = field(default_factory=list)
    absent: list[AbsentRun] = field(default_factory=list)
    problems: PlanProblems = field(default_factory=PlanProblems)

    @property
    def is_paired(self) -> bool:
        return bool(self.manifest.pairs)

    def inherit_settings(self, method: str) -> Optional[dict[str, Any]]:
        """The ``inherit:`` settings for ``method``'s runs (``teacher``: the fine-tune); None: not evaluated.

        ``--mini`` never runs them (its runs are a smoke test of training).
        """
        spec = self.manifest.inherit
        if spec is None or self.options.mini or method not in spec.methods:
            return None
        return spec.settings()

    @property
    def teacher_weights(self) -> Path:
        """The file every student distils from (the fine-tuned teacher, or a link to the pretrained one)."""
        if self.teacher_run is None:
            return self.out_dir / TEACHER / PRETRAINED_LINK
        return self.teacher_run.out_dir / "checkpoints" / "last.pt"

    def link_pretrained(self) -> bool:
        """Create the link :attr:`teacher_weights` names when there is no fine-tune; True if it changed."""
        if self.teacher_run is not None or self.pretrained is None:
            return False
        return make_link(self.teacher_weights, self.pretrained)

    def cache_dir(self, seed: int, digest: str = "") -> Path:
        """``teacher_cache/seed<k>`` for the suite's first cached setup, ``teacher_cache/<digest>/seed<k>`` for others."""
        base = self.out_dir / "teacher_cache"
        return base / f"seed{seed}" if not digest else base / digest / f"seed{seed}"

    def teacher(self, label: str) -> TeacherEval:
        return next(t for t in self.teachers if t.label == label)


def make_link(link: Path, target: Path) -> bool:
    """``link`` -> ``target`` (replacing another link); True if it was created or changed."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return False
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=target.is_dir())
    return True


# ---------------------------------------------------------------------------------------------- paths
def resolve_existing(raw: Any, what: str, source: Any, hint: str, problems: PlanProblems, user: str = "") -> Path:
    """A path from a config, resolved against the working directory; a missing one is recorded in ``problems``."""
    if not raw:
        raise SuiteError(f"{what} is not set in {source} ({hint})")
    path = Path(str(raw)).expanduser()
    resolved = path if path.is_absolute() else Path.cwd() / path
    if not resolved.exists():
        problems.add_missing(what, raw, resolved, source, hint, user)
        return resolved
    return resolved.resolve()


def distinct(overrides: Sequence[str]) -> tuple[str, ...]:
    """``overrides`` without repeats (a later equal one says nothing new)."""
    return tuple(dict.fromkeys(overrides))


def dataset_root(out_dir: Path) -> Path:
    """Where a suite with a ``dataset:`` entry makes its data."""
    return out_dir / "data"


_CIFAR_HINT = ("The folder holding {folder}/ (the official python version, "
               "https://www.cs.toronto.edu/~kriz/{folder}.tar.gz, untarred): put it there, run from the directory "
               "the path is relative to, or pass data.root=PATH after the suite folder.")


def _cifar_present(name: str, root: Path) -> bool:
    from kdlab.data.sources.cifar import _find_folder  # the reader's own layout check (no decoding)

    return _find_folder(root, name) is not None


def data_override(config: Path, overrides: Sequence[str], problems: PlanProblems, user: str = "") -> str:
    """``data.root=...`` for this config (absolute for ImageFolder zips); a missing dataset goes to ``problems``."""
    from kdlab.config import load_config

    cfg = load_config(config, overrides)
    name, root = cfg.data.name, cfg.data.root
    if name in ("cifar10", "cifar100") and root and not cfg.data.download:
        resolved = Path(root).expanduser()
        resolved = resolved if resolved.is_absolute() else Path.cwd() / resolved
        if not _cifar_present(name, resolved):
            folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
            problems.add_missing("data.root", root, resolved, shown_path(config), _CIFAR_HINT.format(folder=folder), user)
    if name != "imagefolder":
        return f"data.root={root}" if root else "data.root=null"
    resolved = resolve_existing(
        root, "data.root", config,
        "The suite needs the CIFAR-10 JPEG zip (an ImageFolder zip with train/ and test/): put it there, "
        "run from the directory the path is relative to, or pass data.root=PATH after the suite folder.",
        problems, user,
    )
    return f"data.root={resolved}"


def progress_override(verbose: bool) -> str:
    return "trainer.progress=" + ("lines" if verbose else "none")


def distils(config: Path, overrides: Sequence[str]) -> bool:
    from kdlab.config import load_config

    teacher = load_config(config, overrides).teacher
    return teacher.name is not None or teacher.checkpoint is not None


def seeds_and_jobs(manifest: SuiteManifest, options: SuiteOptions) -> tuple[int, int]:
    mini = manifest.mini
    seeds = options.seeds if options.seeds is not None else (mini.seeds if options.mini else manifest.seeds)
    jobs = options.jobs if options.jobs is not None else (mini.jobs if options.mini else manifest.jobs)
    for flag_name, value in (("--seeds", seeds), ("--jobs", jobs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SuiteError(f"{flag_name} must be a positive integer, got {value!r}")
    return seeds, jobs


def output_folder(manifest: SuiteManifest, options: SuiteOptions) -> Path:
    default_out = Path("runs") / "bench" / (manifest.name + ("-mini" if options.mini else ""))
    return Path(options.out_dir if options.out_dir is not None else default_out).expanduser().resolve()


def override_tail(manifest: SuiteManifest, options: SuiteOptions) -> tuple[str, ...]:
    """The overrides after the suite's and the method's: ``--mini``'s, the command line's, the progress display."""
    return (*(manifest.mini.overrides if options.mini else ()), *options.overrides, progress_override(options.verbose))


def wanted_methods(manifest: SuiteManifest, options: SuiteOptions) -> tuple[MethodSpec, ...]:
    wanted = options.methods if options.methods is not None else (manifest.mini.methods if options.mini else None)
    return select_methods(manifest, wanted)


# ---------------------------------------------------------------------------------------------- planning
def plan_suite(options: SuiteOptions, *, strict: bool = True) -> SuitePlan:
    """Resolve the manifest and the options into runs; check paths and configs (nothing trains).

    ``strict``: a missing file or an invalid config raises one SuiteError naming all of them;
    otherwise they are left in ``plan.problems`` (``--dry-run``).
    """
    manifest = load_manifest(options.suite_dir)
    if options.pairs is not None and not manifest.pairs:
        raise SuiteError(f"--pairs: {manifest.folder / 'suite.yaml'} has no pairs: (one teacher and student)")
    if manifest.pairs:
        from kdlab.benchmarks.suite_pairs import plan_pairs

        plan = plan_pairs(manifest, options)
    else:
        plan = _plan_single(manifest, options)
    if strict and plan.problems.missing:
        _raise(plan.problems)
    plan.with_prerequisites = check_configs(plan)
    if strict and plan.problems.invalid:
        _raise(plan.problems)
    return plan


def _raise(problems: PlanProblems) -> None:
    error = problems.error()
    if error is not None:
        raise error


def _plan_single(manifest: SuiteManifest, options: SuiteOptions) -> SuitePlan:
    """A suite with one teacher (fine-tuned or not) and one student setup."""
    problems = PlanProblems()
    mini = manifest.mini
    seeds, jobs = seeds_and_jobs(manifest, options)
    methods = wanted_methods(manifest, options)
    finetune = mini.finetune if options.mini else manifest.teacher.finetune
    evaluate_pretrained = mini.evaluate_pretrained if options.mini else manifest.teacher.evaluate_pretrained
    out_dir = output_folder(manifest, options)
    tail = override_tail(manifest, options)
    made: tuple[str, ...] = ()  # the made dataset's root comes first (a later data.root wins)
    if manifest.dataset is not None:
        source = manifest.dataset.source
        if source != "digits":
            resolve_existing(source, "dataset.make_detection.source", manifest.folder / "suite.yaml",
                             "The suite makes its detection canvases from this classification source (the CIFAR-10 "
                             "JPEG zip): put it there or run from the directory the path is relative to.", problems)
        made = (f"data.root={dataset_root(out_dir)}",)
    common = (*made, *manifest.overrides, *tail)

    teacher_config = manifest.teacher.config
    assert teacher_config is not None  # a suite without pairs has a teacher config (load_manifest checks)
    teacher_base = distinct((*common, data_override(teacher_config, common, problems, TEACHER)))
    from kdlab.config import load_config

    teacher_cfg = load_config(teacher_config, teacher_base)
    # a detection teacher starts from a pretrained classification backbone, not from a whole pretrained detector
    weights_key = "model.checkpoint"
    if teacher_cfg.task == "detection" and teacher_cfg.model.checkpoint is None:
        weights_key = "model.kwargs.backbone_checkpoint"
    if options.teacher_checkpoint is not None:
        pretrained = resolve_existing(options.teacher_checkpoint, "--teacher-checkpoint", "the command line",
                                      "Pass an existing teacher weights file.", problems, TEACHER)
    else:
        configured = (teacher_cfg.model.checkpoint if weights_key == "model.checkpoint"
                      else teacher_cfg.model.kwargs.get("backbone_checkpoint"))
        pretrained = resolve_existing(
            configured, weights_key, teacher_config,
            "The suite needs the pretrained teacher weights: put them there or pass --teacher-checkpoint PATH.",
            problems, TEACHER,
        )
    teacher_overrides = (*teacher_base, f"{weights_key}={pretrained}")
    teacher_run = None
    if finetune:
        teacher_dir = out_dir / TEACHER
        teacher_run = PlannedRun(
            TEACHER, 0, teacher_config, teacher_dir, (*teacher_overrides, f"trainer.out_dir={teacher_dir}", "trainer.seed=0")
        )
    plan = SuitePlan(manifest, options, out_dir, seeds, jobs, methods, pretrained, teacher_overrides,
                     evaluate_pretrained, teacher_run, problems=problems)
    _single_runs(plan, made, tail)
    return plan


#: data keys that do not change a teacher cache's content
_CACHE_IGNORED_DATA = ("num_workers", "cache_dir", "eval_batch_size", "root")


def cache_digest(cfg: Any) -> str:
    """What a teacher cache's content depends on besides the teacher and the seed, as a short digest.

    Runs of one teacher whose digests agree share the per-seed cache (their batches are the same).
    The data views the loss terms ask for (SSKD's 4 rotations) are applied first: they change
    every cached row.
    """
    from kdlab.config import to_dict
    from kdlab.engine.builders import with_views

    raw = to_dict(with_views(cfg))
    data = {k: v for k, v in raw["data"].items() if k not in _CACHE_IGNORED_DATA}
    trainer = {k: raw["trainer"][k] for k in ("epochs", "precision", "channels_last")}
    distill = {k: v for k, v in raw["distill"].items() if k.startswith("teacher_cache_")}
    teacher = {k: v for k, v in raw["teacher"].items() if k not in ("compile", "checkpoint")}
    text = json.dumps([data, trainer, distill, teacher], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _single_runs(plan: SuitePlan, made: tuple[str, ...], tail: tuple[str, ...]) -> None:
    """Every method for every seed (seeds outermost: an interrupted suite has whole comparisons for its first seeds)."""
    options, manifest = plan.options, plan.manifest
    heads = {spec.name: (*made, *manifest.overrides, *spec.overrides, *tail) for spec in plan.methods}
    data = {spec.name: data_override(spec.config, heads[spec.name], plan.problems, spec.name) for spec in plan.methods}
    digests: dict[str, str] = {}  # method -> its cache folder's digest ("" for the first cached setup)
    for seed in range(plan.seeds):
        for spec in plan.methods:
            run_dir = plan.out_dir / "runs" / spec.name / f"seed{seed}"
            overrides = [*distinct((*heads[spec.name], data[spec.name])), f"trainer.out_dir={run_dir}",
                         f"trainer.seed={seed}"]
            cache = None
            if distils(spec.config, overrides):
                overrides.append(f"teacher.checkpoint={plan.teacher_weights}")
                if spec.teacher_cache and options.teacher_cache:
                    if spec.name not in digests:
                        digests[spec.name] = _config_cache_digest(spec.config, overrides)
                    first = next(iter(digests.values()))
                    cache = plan.cache_dir(seed, "" if digests[spec.name] == first else digests[spec.name])
                    # a link inside the run folder: every seed's config then names "<run>/teacher_cache",
                    # which `kdlab report` reads as the same value, so it groups a method's seeds together
                    overrides.append(f"distill.teacher_cache={run_dir / CACHE_LINK}")
            plan.runs.append(PlannedRun(spec.name, seed, spec.config, run_dir, tuple(overrides), cache))


def _config_cache_digest(config: Path, overrides: list[str]) -> str:
    """:func:`cache_digest` of a method's config ("" when it does not load: validation reports it)."""
    from kdlab.config import ConfigError, load_config

    try:
        return cache_digest(load_config(config, overrides))
    except ConfigError:
        return ""


# ---------------------------------------------------------------------------------------------- validation
def _validation_teacher(plan: SuitePlan, run: PlannedRun) -> Optional[Path]:
    """The real teacher weights a run's config is checked against (the fine-tuned one does not exist yet)."""
    if run.teacher is not None:
        return plan.teacher(run.teacher).checkpoint
    return plan.pretrained


def validate_run(plan: SuitePlan, run: PlannedRun) -> bool:
    """Load and check one run's config and loss terms; True when its terms need a run first.

    Checked against the real teacher weights; without them (a dry run with the teacher missing)
    only the config and the terms' names and parameters are checked.
    """
    from kdlab.methods.build import prerequisites, term_specs

    weights = _validation_teacher(plan, run)
    overrides = tuple(
        f"teacher.checkpoint={weights}" if o.startswith("teacher.checkpoint=") else o
        for o in run.overrides if not o.startswith("distill.teacher_cache=")
    )
    cfg = PlannedRun(run.method, run.seed, run.config, run.out_dir, overrides).load()
    distilling = any(o.startswith("teacher.checkpoint=") for o in overrides)
    if distilling and (weights is None or not weights.exists()):
        term_specs(cfg)
        return False
    return bool(prerequisites(cfg))  # also validates every term's name and parameters


def check_configs(plan: SuitePlan) -> tuple[str, ...]:
    """Validate every config and loss term (names, parameters) before anything trains.

    Returns the run groups whose terms need a run first; a config that does not validate is
    recorded in ``plan.problems.invalid``.
    """
    from kdlab.config import ConfigError

    needing: list[str] = []
    runs = ([plan.teacher_run] if plan.teacher_run else []) + [r for r in plan.runs if r.seed == 0]
    for run in runs:
        try:
            if validate_run(plan, run) and run.prerequisite_group not in needing:
                needing.append(run.prerequisite_group)
        except ConfigError as err:
            plan.problems.invalid.append(f"{run.where} ({shown_path(run.config)}): {err}")
    return tuple(needing)
