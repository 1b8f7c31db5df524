"""``kdlab bench suite SUITE_DIR``: a real-data benchmark of every method, seeds included.

A suite is a folder of ordinary kdlab configs plus ``suite.yaml`` (see
:mod:`kdlab.benchmarks.suite_manifest`). Running it:

1. evaluates the pretrained teacher on the test split (as ``kdlab eval``) and
   fine-tunes it briefly with the supervised trainer (``teacher.yaml``);
2. for each seed, builds one teacher-output cache (logits + embeddings of the
   exact augmented batches of that seed) shared by every method marked
   ``teacher_cache: true``, so the teacher runs once per seed instead of once
   per method; runs SSKD's teacher head once;
3. trains every method for every seed with the one trainer, ``jobs`` runs side
   by side (seeds outermost: an interrupted suite has whole comparisons for its
   first seeds); label-free runs are then scored by a linear probe (``eval.json``);
4. aggregates the run folders with :mod:`kdlab.reporting` (the rows of
   ``kdlab report`` / ``kdlab demo``) and writes ``results.json`` and a Markdown
   report (:mod:`kdlab.benchmarks.suite_report`).

Layout of the output folder::

    <out>/suite.json                    what ran, options, timings, failures (marks the folder as a suite's)
    <out>/teacher_pretrained.json       the pretrained teacher's evaluation
    <out>/teacher/                      the teacher fine-tune run (SSKD's head below its checkpoints/)
    <out>/teacher_cache/seed<k>/        the per-seed teacher caches
    <out>/runs/<method>/seed<k>/        one run per method and seed (+ suite_run.json: its wall time)
    <out>/results.json, report.md       the rows and the report

Running the same command again continues: completed runs of the same config
are kept, interrupted ones resume exactly (``--fresh`` starts over).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import kdlab
from kdlab.benchmarks.suite_manifest import TEACHER, MethodSpec, SuiteError, SuiteManifest, load_manifest, select_methods
from kdlab.benchmarks.suite_runs import (
    CACHE_LINK,
    EXIT_INTERRUPTED,
    PlannedRun,
    SuiteInterrupted,
    is_reusable,
    shown_path,
    task_cache,
    task_prerequisites,
    task_pretrained,
    task_run,
)
from kdlab.benchmarks.suite_schedule import Task, TaskResult, run_tasks

Echo = Callable[[str], None]

MARKER_FILE = "suite.json"
PRETRAINED_FILE = "teacher_pretrained.json"
#: without a fine-tune, students read the pretrained weights through this link in <out>/teacher/, so
#: whatever a method stores beside its teacher (SSKD's head) lands in the suite's folder, never
#: beside the shared weights
PRETRAINED_LINK = "pretrained.th"
EXIT_FAILURES = 1


# ---------------------------------------------------------------------------------------------- options / plan
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


@dataclass
class SuitePlan:
    """Everything the suite will do, resolved and validated before anything trains."""

    manifest: SuiteManifest
    options: SuiteOptions
    out_dir: Path
    seeds: int
    jobs: int
    methods: tuple[MethodSpec, ...]
    pretrained: Path  # the pretrained teacher weights
    teacher_overrides: tuple[str, ...]  # the teacher config's overrides (pretrained weights, data path)
    evaluate_pretrained: bool
    teacher_run: Optional[PlannedRun]  # the fine-tune, or None (distil from the pretrained weights)
    runs: list[PlannedRun] = field(default_factory=list)
    with_prerequisites: tuple[str, ...] = ()  # methods whose terms need a run first (SSKD's teacher head)

    @property
    def teacher_weights(self) -> Path:
        """The file every student distils from (the fine-tuned teacher, or a link to the pretrained one)."""
        if self.teacher_run is None:
            return self.out_dir / TEACHER / PRETRAINED_LINK
        return self.teacher_run.out_dir / "checkpoints" / "last.pt"

    def link_pretrained(self) -> bool:
        """Create the link :attr:`teacher_weights` names when there is no fine-tune; True if it changed."""
        if self.teacher_run is not None:
            return False
        link = self.teacher_weights
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and Path(os.readlink(link)) == self.pretrained:
            return False
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(self.pretrained)
        return True

    def cache_dir(self, seed: int) -> Path:
        return self.out_dir / "teacher_cache" / f"seed{seed}"


def _resolve_existing(raw: Any, what: str, source: Any, hint: str) -> Path:
    """A path from a config, resolved against the working directory; SuiteError when missing."""
    if not raw:
        raise SuiteError(f"{what} is not set in {source} ({hint})")
    path = Path(str(raw)).expanduser()
    resolved = path if path.is_absolute() else Path.cwd() / path
    if not resolved.exists():
        raise SuiteError(
            f"{what}={raw} (from {source}, resolved against the working directory {Path.cwd()}) "
            f"does not exist: {resolved}. {hint}"
        )
    return resolved.resolve()


def _distinct(overrides: Sequence[str]) -> tuple[str, ...]:
    """``overrides`` without repeats (a later equal one says nothing new)."""
    return tuple(dict.fromkeys(overrides))


def dataset_root(out_dir: Path) -> Path:
    """Where a suite with a ``dataset:`` entry makes its data."""
    return out_dir / "data"


def ensure_dataset(plan: "SuitePlan", echo: Echo = print) -> Optional[float]:
    """Make the manifest's dataset into ``<out>/data`` unless the same one is there; seconds it took, or None."""
    from kdlab.data.detection import MakeDetectionOptions, make_detection_dataset

    spec = plan.manifest.dataset
    if spec is None:
        return None
    root = dataset_root(plan.out_dir)
    chosen = {**spec.options, **(plan.manifest.mini.dataset if plan.options.mini else {})}
    try:
        options = MakeDetectionOptions(**chosen)
    except TypeError as err:
        raise SuiteError(f"{plan.manifest.folder / 'suite.yaml'}: dataset options: {err}") from None
    source = spec.source if spec.source == "digits" else str(Path(spec.source).expanduser().resolve())
    marker = root / "make_detection.json"
    if marker.is_file():
        made = json.loads(marker.read_text())
        if made.get("source") == source and made.get("options") == dataclasses.asdict(options):
            return None
    echo(f"making the detection canvases: kdlab data make-detection {spec.source} {root} (seed {options.seed})")
    started = time.monotonic()
    make_detection_dataset(source, root, options, overwrite=True)
    return time.monotonic() - started


def _data_override(config: Path, overrides: Sequence[str]) -> str:
    """``data.root=<absolute path>`` for this config, or SuiteError when the dataset is missing."""
    from kdlab.config import load_config

    cfg = load_config(config, overrides)
    if cfg.data.name != "imagefolder":
        return f"data.root={cfg.data.root}" if cfg.data.root else "data.root=null"
    root = _resolve_existing(
        cfg.data.root, "data.root", config,
        "The suite needs the CIFAR-10 JPEG zip (an ImageFolder zip with train/ and test/): put it there, "
        "run from the directory the path is relative to, or pass data.root=PATH after the suite folder.",
    )
    return f"data.root={root}"


def _progress(verbose: bool) -> str:
    return "trainer.progress=" + ("lines" if verbose else "none")


def _distils(config: Path, overrides: Sequence[str]) -> bool:
    from kdlab.config import load_config

    teacher = load_config(config, overrides).teacher
    return teacher.name is not None or teacher.checkpoint is not None


def plan_suite(options: SuiteOptions) -> SuitePlan:
    """Resolve the manifest and the options into runs; check paths and configs (nothing trains)."""
    manifest = load_manifest(options.suite_dir)
    mini = manifest.mini
    seeds = options.seeds if options.seeds is not None else (mini.seeds if options.mini else manifest.seeds)
    jobs = options.jobs if options.jobs is not None else (mini.jobs if options.mini else manifest.jobs)
    for flag, value in (("--seeds", seeds), ("--jobs", jobs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SuiteError(f"{flag} must be a positive integer, got {value!r}")
    wanted = options.methods if options.methods is not None else (mini.methods if options.mini else None)
    methods = select_methods(manifest, wanted)
    finetune = mini.finetune if options.mini else manifest.teacher.finetune
    evaluate_pretrained = mini.evaluate_pretrained if options.mini else manifest.teacher.evaluate_pretrained
    default_out = Path("runs") / "bench" / (manifest.name + ("-mini" if options.mini else ""))
    out_dir = Path(options.out_dir if options.out_dir is not None else default_out).expanduser().resolve()
    common = (*(mini.overrides if options.mini else ()), *options.overrides, _progress(options.verbose))
    if manifest.dataset is not None:
        source = manifest.dataset.source
        if source != "digits":
            _resolve_existing(source, "dataset.make_detection.source", manifest.folder / "suite.yaml",
                              "The suite makes its detection canvases from this classification source (the CIFAR-10 "
                              "JPEG zip): put it there or run from the directory the path is relative to.")
        common = (f"data.root={dataset_root(out_dir)}", *common)

    teacher_config = manifest.teacher.config
    teacher_base = _distinct((*common, _data_override(teacher_config, common)))
    from kdlab.config import load_config

    teacher_cfg = load_config(teacher_config, teacher_base)
    # a detection teacher starts from a pretrained classification backbone, not from a whole pretrained detector
    weights_key = "model.checkpoint"
    if teacher_cfg.task == "detection" and teacher_cfg.model.checkpoint is None:
        weights_key = "model.kwargs.backbone_checkpoint"
    if options.teacher_checkpoint is not None:
        pretrained = _resolve_existing(options.teacher_checkpoint, "--teacher-checkpoint", "the command line",
                                       "Pass an existing teacher weights file.")
    else:
        configured = (teacher_cfg.model.checkpoint if weights_key == "model.checkpoint"
                      else teacher_cfg.model.kwargs.get("backbone_checkpoint"))
        pretrained = _resolve_existing(
            configured, weights_key, teacher_config,
            "The suite needs the pretrained teacher weights: put them there or pass --teacher-checkpoint PATH.",
        )
    teacher_overrides = (*teacher_base, f"{weights_key}={pretrained}")
    teacher_run = None
    if finetune:
        teacher_dir = out_dir / TEACHER
        teacher_run = PlannedRun(
            TEACHER, 0, teacher_config, teacher_dir, (*teacher_overrides, f"trainer.out_dir={teacher_dir}", "trainer.seed=0")
        )
    plan = SuitePlan(
        manifest, options, out_dir, seeds, jobs, methods, pretrained, teacher_overrides, evaluate_pretrained, teacher_run
    )
    data_overrides = {spec.name: _data_override(spec.config, common) for spec in methods}
    for seed in range(seeds):
        for spec in methods:
            run_dir = out_dir / "runs" / spec.name / f"seed{seed}"
            overrides = [*_distinct((*common, data_overrides[spec.name])), f"trainer.out_dir={run_dir}",
                         f"trainer.seed={seed}"]
            cache = None
            if _distils(spec.config, overrides):
                overrides.append(f"teacher.checkpoint={plan.teacher_weights}")
                if spec.teacher_cache and options.teacher_cache:
                    cache = plan.cache_dir(seed)
                    # a link inside the run folder: every seed's config then names "<run>/teacher_cache",
                    # which `kdlab report` reads as the same value, so it groups a method's seeds together
                    overrides.append(f"distill.teacher_cache={run_dir / CACHE_LINK}")
            plan.runs.append(PlannedRun(spec.name, seed, spec.config, run_dir, tuple(overrides), cache))
    plan.with_prerequisites = check_configs(plan)
    return plan


def check_configs(plan: SuitePlan) -> tuple[str, ...]:
    """Validate every config and loss term (names, parameters) before anything trains.

    Distillation runs are checked against the pretrained teacher (the fine-tuned one
    does not exist yet). Returns the methods whose terms need a run first.
    """
    from kdlab.config import ConfigError
    from kdlab.methods.build import prerequisites

    needing = []
    runs = ([plan.teacher_run] if plan.teacher_run else []) + [r for r in plan.runs if r.seed == 0]
    for run in runs:
        overrides = tuple(
            f"teacher.checkpoint={plan.pretrained}" if o.startswith("teacher.checkpoint=") else o
            for o in run.overrides if not o.startswith("distill.teacher_cache=")
        )
        try:
            cfg = PlannedRun(run.method, run.seed, run.config, run.out_dir, overrides).load()
            if prerequisites(cfg):  # also validates every term's name and parameters
                needing.append(run.method)
        except ConfigError as err:
            raise SuiteError(f"method {run.method} ({shown_path(run.config)}): {err}") from None
    return tuple(needing)


# ---------------------------------------------------------------------------------------------- the output folder
def prepare_out_dir(plan: SuitePlan) -> None:
    """Refuse a non-empty folder the suite did not write; with ``--fresh`` delete the suite's own files."""
    out = plan.out_dir
    if out.exists() and not out.is_dir():
        raise SuiteError(f"--out {out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MARKER_FILE).is_file():
        raise SuiteError(
            f"--out {out} is not empty and was not written by kdlab bench suite (no {MARKER_FILE}); "
            "choose a new or empty folder"
        )
    if plan.options.fresh:
        for name in (TEACHER, "runs", "teacher_cache", "timings", PRETRAINED_FILE, "results.json", "report.md"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def _write_marker(plan: SuitePlan, extra: dict[str, Any]) -> None:
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    options = plan.options
    marker = {
        "tool": "kdlab bench suite",
        "kdlab_version": kdlab.__version__,
        "suite": str(Path(options.suite_dir).resolve()),
        "command": options.command,
        "mini": options.mini,
        "seeds": plan.seeds,
        "jobs": plan.jobs,
        "methods": [spec.name for spec in plan.methods],
        "overrides": list(options.overrides),
        "teacher": str(plan.pretrained),
        "teacher_finetune": plan.teacher_run is not None,
        "teacher_cache": options.teacher_cache,
        **extra,
    }
    (plan.out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- tasks
def build_tasks(plan: SuitePlan, new_teacher: bool = False) -> list[Task]:
    """The suite as dependent tasks, in the order they should start.

    ``new_teacher``: the students' teacher changed since an earlier invocation (also implied
    by a fine-tune that will run again), so its distilled runs and caches are stale.
    """
    tasks: list[Task] = []
    teacher_deps: tuple[str, ...] = ()
    if plan.evaluate_pretrained:
        tasks.append(Task("pretrained", "pretrained teacher evaluation", task_pretrained,
                          (plan.manifest.teacher.config, plan.teacher_overrides, plan.pretrained,
                           plan.out_dir / PRETRAINED_FILE)))
    new_teacher = new_teacher or (plan.teacher_run is not None and not is_reusable(plan.teacher_run))
    if plan.teacher_run is not None:
        tasks.append(Task(TEACHER, "teacher fine-tune", task_run, (plan.teacher_run, True)))
        teacher_deps = (TEACHER,)
    for method in plan.with_prerequisites:
        first = next(r for r in plan.runs if r.method == method)
        tasks.append(Task(f"prerequisites:{method}", f"{method}: runs its terms need first",
                          task_prerequisites, (first,), teacher_deps))
    for seed in range(plan.seeds):
        for run in (r for r in plan.runs if r.seed == seed):
            distils = any(o.startswith("teacher.checkpoint=") for o in run.overrides)
            deps = list(teacher_deps if distils else ())
            if run.cache is not None:
                cache_key = f"cache:{seed}"
                if not any(t.key == cache_key for t in tasks):
                    # the cache folder is the suite's own: one that no longer fits (new teacher or data) is rebuilt
                    tasks.append(Task(cache_key, f"teacher cache seed {seed}", task_cache,
                                      (run, True, plan.options.verbose), tuple(teacher_deps)))
                deps.append(cache_key)
            if run.method in plan.with_prerequisites:
                deps.append(f"prerequisites:{run.method}")
            reuse = not (distils and new_teacher)
            tasks.append(Task(f"run:{run.method}:{seed}", f"{run.method} seed {seed}", task_run, (run, reuse), tuple(deps)))
    return tasks


# ---------------------------------------------------------------------------------------------- the suite
@dataclass
class RunOutcome:
    """A finished run as the report needs it."""

    run: PlannedRun
    record: Any  # kdlab.reporting.RunRecord
    wall_seconds: Optional[float]  # the suite's measurement (setup, training, evaluation)
    reused: bool = False
    cpu_seconds: Optional[float] = None  # CPU time of the process that ran it (the cost on an idle core)


@dataclass
class SuiteResult:
    """What a suite run produced."""

    plan: SuitePlan
    rows: list[dict[str, Any]]
    outcomes: list[RunOutcome]
    failures: list[dict[str, Any]]
    timings: dict[str, Any]
    started_at: datetime
    seconds: float
    cpu_seconds: float
    load_average: Optional[float]
    exit_code: int = 0
    files: list[Path] = field(default_factory=list)


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _score(record: Any) -> str:
    from kdlab.reporting import run_accuracy

    accuracy = run_accuracy(record)
    if accuracy["final"] is None:
        return "no top-1 recorded"
    if accuracy["metric"] == "val_map":
        return f"AP {accuracy['final']:.2f}"
    name = "linear-probe top-1" if accuracy["metric"] == "linear_top1" else "top-1"
    return f"{name} {accuracy['final']:.2f}%"


class _Progress:
    """Turns finished tasks into outcomes, timings, failures and one line each."""

    def __init__(self, plan: SuitePlan, total: int, echo: Echo) -> None:
        self.plan, self.total, self.echo = plan, total, echo
        self.done = 0
        self.clock = time.monotonic()
        self.outcomes: list[RunOutcome] = []
        self.teacher: Optional[RunOutcome] = None
        self.pretrained: Optional[dict[str, Any]] = None
        self.failures: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {"caches": {}, "prerequisites": {}}

    def _remember(self, key: str, value: dict[str, Any], fresh: bool) -> dict[str, Any]:
        """Timings of shared work, kept in <out>/timings/ so a later invocation that reuses it still reports them."""
        path = self.plan.out_dir / "timings" / (key.replace(":", "_") + ".json")
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value, indent=2) + "\n")
            return value
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return value
        return saved if isinstance(saved, dict) else value

    def __call__(self, result: TaskResult) -> None:
        from kdlab.reporting import load_run

        self.done += 1
        task = result.task
        head = f"[{self.done}/{self.total}] {task.label}: "
        if not result.ok:
            reason = result.skipped or f"{type(result.error).__name__}: {result.error}"
            self.failures.append({"task": task.key, "label": task.label, "error": reason})
            self.echo(head + ("skipped: " if result.skipped else "FAILED: ") + reason)
            return
        value = result.value or {}
        minutes = (time.monotonic() - self.clock) / 60
        if task.key == "pretrained":
            self.pretrained = value
            self.timings["teacher_pretrained_eval"] = value.get("wall_seconds")
            self.echo(head + f"top-1 {value['val_top1']:.2f}% ({shown_path(self.plan.pretrained)})")
        elif task.key.startswith("cache:"):
            self.timings["caches"][task.key.split(":")[1]] = self._remember(task.key, value, bool(value.get("built")))
            self.echo(head + (f"built in {value['seconds']:.0f}s" if value.get("built") else "up to date"))
        elif task.key.startswith("prerequisites:"):
            self.timings["prerequisites"][task.key.split(":")[1]] = self._remember(task.key, value, bool(value.get("ran")))
            self.echo(head + (f"{', '.join(value['ran'])} in {value['seconds']:.0f}s" if value.get("ran") else "done before"))
        else:
            run: PlannedRun = task.args[0]
            outcome = RunOutcome(run, load_run(run.out_dir), value.get("wall_seconds"), value.get("reused", False),
                                 value.get("cpu_seconds"))
            if task.key == TEACHER:
                self.teacher = outcome
            else:
                self.outcomes.append(outcome)
            when = "reused" if outcome.reused else f"{outcome.wall_seconds:.0f}s"
            self.echo(head + f"{_score(outcome.record)} ({when}; {minutes:.1f} min elapsed)")


def decode_data_once(plan: SuitePlan) -> float:
    """Decode every distinct dataset of the plan into the fast-path cache now, in this process.

    Otherwise the first tasks of parallel workers would all decode the same images at
    once (duplicated work on a machine with two cores). Returns the seconds it took.
    """
    from kdlab.data import prepare_cache

    started = time.monotonic()
    seen: set[str] = set()
    for run in ([plan.teacher_run] if plan.teacher_run else []) + plan.runs:
        cfg = run.load()
        if cfg.task != "classification":  # the fast-path cache is the classification pipeline's
            continue
        data = cfg.data
        key = json.dumps([data.name, data.root, data.subset, data.image_size, data.cache_dir, data.pipeline])
        if key not in seen:
            seen.add(key)
            prepare_cache(data, progress=plan.options.verbose)
    return time.monotonic() - started


def run_suite(options: SuiteOptions, echo: Echo = print) -> SuiteResult:
    """Run the suite (see the module docstring) and write its results; returns them with an exit code."""
    import torch

    from kdlab.benchmarks.suite_report import summarize_suite, write_outputs

    plan = plan_suite(options)
    prepare_out_dir(plan)
    started_at = datetime.now(timezone.utc)
    _write_marker(plan, {"started": started_at.isoformat(timespec="seconds")})
    tasks = build_tasks(plan, new_teacher=plan.link_pretrained())
    echo(
        f"kdlab bench suite {plan.manifest.name}: {len(plan.methods)} method(s) x {plan.seeds} seed(s)"
        f"{' + teacher fine-tune' if plan.teacher_run else ''}, {plan.jobs} job(s) side by side, into {plan.out_dir}"
    )
    clock, cpu_clock = time.monotonic(), time.process_time()
    previous_threads = torch.get_num_threads()  # inline runs apply trainer.num_threads process-wide
    progress = _Progress(plan, len(tasks), echo)
    made = ensure_dataset(plan, echo)
    if made is not None:
        progress.timings["make_dataset"] = round(made, 2)
    if plan.jobs > 1:
        progress.timings["decode_data"] = round(decode_data_once(plan), 2)
    try:
        _, stopped = run_tasks(
            tasks, plan.jobs, progress, stop_on_failure=not options.keep_going, stop_types=(SuiteInterrupted,)
        )
    finally:
        torch.set_num_threads(previous_threads)
    exit_code = 0
    if stopped is not None:
        echo(f"stopped: {stopped!r}")
        exit_code = getattr(stopped, "exit_code", EXIT_INTERRUPTED if isinstance(stopped, KeyboardInterrupt) else EXIT_FAILURES)
    elif progress.failures:
        exit_code = EXIT_FAILURES
    seconds, cpu_seconds = time.monotonic() - clock, time.process_time() - cpu_clock
    rows = summarize_suite(plan, progress.outcomes, progress.teacher, progress.pretrained)
    result = SuiteResult(plan, rows, progress.outcomes, progress.failures, progress.timings, started_at, seconds,
                         cpu_seconds, _load_average(), exit_code)
    result.files = write_outputs(result)
    _write_marker(
        plan,
        {"started": started_at.isoformat(timespec="seconds"), "finished": exit_code == 0,
         "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1), "load_average": result.load_average,
         "timings": progress.timings, "failures": progress.failures, "exit_code": exit_code},
    )
    return result


def dry_run(options: SuiteOptions, echo: Echo = print) -> SuitePlan:
    """Plan and validate without training; print the tasks and, with ``options.doc``, write the protocol document."""
    from kdlab.benchmarks.suite_report import render_document

    plan = plan_suite(options)
    echo(f"suite {plan.manifest.name}: {len(plan.methods)} method(s) x {plan.seeds} seed(s), {plan.jobs} job(s), "
         f"into {plan.out_dir}")
    if plan.manifest.dataset is not None:
        flags = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in plan.manifest.dataset.options.items())
        echo(f"  dataset: kdlab data make-detection {plan.manifest.dataset.source} {dataset_root(plan.out_dir)} {flags}")
    for task in build_tasks(plan):
        after = f"  (after {', '.join(task.deps)})" if task.deps else ""
        command = task.args[0].command() if task.fn is task_run else ""
        echo(f"  {task.key}{after}" + (f"\n      {command}" if command else ""))
    if options.doc is not None:
        Path(options.doc).parent.mkdir(parents=True, exist_ok=True)
        Path(options.doc).write_text(render_document(plan, None))
        echo(f"wrote {options.doc} (protocol and command; no results)")
    return plan


__all__ = [
    "PlannedRun",
    "RunOutcome",
    "SuiteInterrupted",
    "SuiteOptions",
    "SuitePlan",
    "SuiteResult",
    "build_tasks",
    "dry_run",
    "plan_suite",
    "run_suite",
]
