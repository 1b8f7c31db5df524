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

Suites with ``pairs:`` (several teacher -> student pairs, each recipe's own teacher, no
fine-tune) are planned by :mod:`kdlab.benchmarks.suite_pairs` (their layout is there) and
reported per pair against the published numbers (:mod:`kdlab.benchmarks.suite_report_pairs`).
Planning and validation are :mod:`kdlab.benchmarks.suite_plan`.

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
from typing import Any, Callable, Collection, Optional

import kdlab
from kdlab.benchmarks.suite_manifest import TEACHER, SuiteError
from kdlab.benchmarks.suite_pairs import TEACHERS_DIR, build_pair_tasks, link_teachers, summary_line
from kdlab.benchmarks.suite_plan import (
    PRETRAINED_LINK,
    SuiteOptions,
    SuitePlan,
    dataset_root,
    plan_suite,
)
from kdlab.benchmarks.suite_runs import (
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
EXIT_FAILURES = 1


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



# ---------------------------------------------------------------------------------------------- the output folder
def prepare_out_dir(plan: SuitePlan) -> None:
    """Refuse a non-empty folder the suite did not write; with ``--fresh`` delete the suite's own files."""
    from kdlab.checkpoint_io import check_output_file, check_output_folder

    out = plan.out_dir
    check_output_folder(out, "--out")  # a file, device or pipe there: one line, never replaced
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MARKER_FILE).is_file():
        raise SuiteError(
            f"--out {out} is not empty and was not written by kdlab bench suite (no {MARKER_FILE}); "
            "choose a new or empty folder"
        )
    if plan.options.fresh:
        for name in (TEACHER, TEACHERS_DIR, "runs", "teacher_cache", "timings", PRETRAINED_FILE, "results.json",
                     "report.md"):
            path = out / name
            if path.is_symlink():
                path.unlink()  # the link itself; what it points to is not the suite's
            elif path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                check_output_file(path, "--fresh")  # a device, pipe or socket named like an output: refused, kept
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
    if plan.is_paired:
        marker["pairs"] = [pair.name for pair in plan.pairs]
        marker["teacher"] = {t.label: str(t.checkpoint) for t in plan.teachers}
    from kdlab.checkpoint_io import atomic_write_text

    atomic_write_text(plan.out_dir / MARKER_FILE, json.dumps(marker, indent=2, default=str) + "\n", what="--out")


# ---------------------------------------------------------------------------------------------- tasks
def build_tasks(plan: SuitePlan, new_teacher: bool = False, stale_teachers: Collection[str] = ()) -> list[Task]:
    """The suite as dependent tasks, in the order they should start.

    ``new_teacher``: the students' teacher changed since an earlier invocation (also implied
    by a fine-tune that will run again), so its distilled runs and caches are stale. Suites
    with pairs: :func:`kdlab.benchmarks.suite_pairs.build_pair_tasks` (``stale_teachers``).
    """
    if plan.is_paired:
        return build_pair_tasks(plan, stale_teachers)
    tasks: list[Task] = []
    teacher_deps: tuple[str, ...] = ()
    if plan.evaluate_pretrained:
        tasks.append(Task("pretrained", "pretrained teacher evaluation", task_pretrained,
                          (plan.manifest.teacher.config, plan.teacher_overrides, plan.pretrained,
                           plan.out_dir / PRETRAINED_FILE)))
    new_teacher = new_teacher or (plan.teacher_run is not None and not is_reusable(plan.teacher_run))
    if plan.teacher_run is not None:
        tasks.append(Task(TEACHER, "teacher fine-tune", task_run,
                          (plan.teacher_run, True, plan.inherit_settings(TEACHER))))
        teacher_deps = (TEACHER,)
    for method in plan.with_prerequisites:
        runs = tuple(r for r in plan.runs if r.method == method)
        tasks.append(Task(f"prerequisites:{method}", f"{method}: runs its terms need first",
                          task_prerequisites, runs, teacher_deps))
    for seed in range(plan.seeds):
        for run in (r for r in plan.runs if r.seed == seed):
            distils = any(o.startswith("teacher.checkpoint=") for o in run.overrides)
            deps = list(teacher_deps if distils else ())
            if run.cache is not None:
                variant = run.cache.parent.name if run.cache.parent != plan.cache_dir(seed).parent else ""
                cache_key = f"cache:{seed}" + (f":{variant}" if variant else "")
                if not any(t.key == cache_key for t in tasks):
                    # the cache folder is the suite's own: one that no longer fits (new teacher or data) is rebuilt
                    label = f"teacher cache seed {seed}" + (f" ({run.method}'s data)" if variant else "")
                    tasks.append(Task(cache_key, label, task_cache,
                                      (run, True, plan.options.verbose), tuple(teacher_deps)))
                deps.append(cache_key)
            if run.method in plan.with_prerequisites:
                deps.append(f"prerequisites:{run.method}")
            reuse = not (distils and new_teacher)
            tasks.append(Task(run.key, run.label, task_run, (run, reuse, plan.inherit_settings(run.method)),
                              tuple(deps)))
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
    report_only: bool = False  # written by --report-only from an earlier invocation's finished runs


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
        self.teacher_evals: dict[str, dict[str, Any]] = {}  # suites with pairs: per teacher label
        self.failures: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {"caches": {}, "prerequisites": {}}

    def _remember(self, key: str, value: dict[str, Any], fresh: bool) -> dict[str, Any]:
        """Timings of shared work, kept in <out>/timings/ so a later invocation that reuses it still reports them."""
        path = self.plan.out_dir / "timings" / (key.replace(":", "_").replace("/", "_") + ".json")
        if fresh:
            from kdlab.checkpoint_io import atomic_write_text

            atomic_write_text(path, json.dumps(value, indent=2) + "\n", what="suite timings")
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
        elif task.key.startswith("pretrained:"):
            label = task.key.split(":", 1)[1]
            self.teacher_evals[label] = value
            self.timings.setdefault("teacher_evals", {})[label] = value.get("wall_seconds")
            self.echo(head + f"top-1 {value['val_top1']:.2f}% ({shown_path(self.plan.teacher(label).checkpoint)})")
        elif task.key.startswith("cache:"):
            self.timings["caches"][task.key.split(":", 1)[1]] = self._remember(task.key, value, bool(value.get("built")))
            self.echo(head + (f"built in {value['seconds']:.0f}s" if value.get("built") else "up to date"))
        elif task.key.startswith("prerequisites:"):
            group = task.key.split(":", 1)[1]
            self.timings["prerequisites"][group] = self._remember(task.key, value, bool(value.get("ran")))
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
            if value.get("inherit_seconds") is not None:
                self.timings.setdefault("inherit", {})[task.key] = value["inherit_seconds"]
                when += f", inherit evaluation {value['inherit_seconds']:.0f}s"
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
    if options.report_only:
        return _report_only(plan, echo)
    started_at = datetime.now(timezone.utc)
    _write_marker(plan, {"started": started_at.isoformat(timespec="seconds")})
    stale = link_teachers(plan) if plan.is_paired else set()
    tasks = build_tasks(plan, new_teacher=plan.link_pretrained(), stale_teachers=stale)
    pairs = f" on {len(plan.pairs)} pair(s)" if plan.is_paired else ""
    echo(
        f"kdlab bench suite {plan.manifest.name}: {len(plan.methods)} method(s){pairs} x {plan.seeds} seed(s)"
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
    rows = summarize_suite(plan, progress.outcomes, progress.teacher, progress.pretrained, progress.teacher_evals)
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


def _report_only(plan: SuitePlan, echo: Echo) -> SuiteResult:
    """``--report-only``: every task replaced by its read-only form, run inline; then the usual outputs."""
    from kdlab.benchmarks.suite_report import summarize_suite, write_outputs
    from kdlab.benchmarks.suite_report_only import report_only_tasks

    started_at = datetime.now(timezone.utc)
    clock, cpu_clock = time.monotonic(), time.process_time()
    tasks = report_only_tasks(build_tasks(plan))
    echo(f"kdlab bench suite {plan.manifest.name} --report-only: {len(tasks)} task(s) read from {plan.out_dir}")
    progress = _Progress(plan, len(tasks), echo)
    run_tasks(tasks, 1, progress, stop_on_failure=False)
    rows = summarize_suite(plan, progress.outcomes, progress.teacher, progress.pretrained, progress.teacher_evals)
    failures = progress.failures
    if plan.options.previous is not None:
        from kdlab.benchmarks.suite_carry import carry_previous_rows

        rows, failures = carry_previous_rows(plan, rows, failures, plan.options.previous, echo)
    result = SuiteResult(plan, rows, progress.outcomes, failures, progress.timings, started_at,
                         time.monotonic() - clock, time.process_time() - cpu_clock, _load_average(),
                         EXIT_FAILURES if failures else 0, report_only=True)
    result.files = write_outputs(result)
    return result


def dry_run(options: SuiteOptions, echo: Echo = print) -> SuitePlan:
    """Plan and validate without training; print the tasks and what stops the suite from running.

    Missing files (each once, with what needs it), configs that do not validate and absent
    (method, pair)s are listed after the tasks; ``plan.problems.exit_code`` says whether the
    suite can start (0), has invalid configs (2) or misses files (4). With ``options.doc`` it
    also writes the protocol document.
    """
    from kdlab.benchmarks.suite_report import render_document

    plan = plan_suite(options, strict=False)
    if plan.is_paired:
        echo(summary_line(plan))
    else:
        echo(f"suite {plan.manifest.name}: {len(plan.methods)} method(s) x {plan.seeds} seed(s), {plan.jobs} job(s), "
             f"into {plan.out_dir}")
    if plan.manifest.dataset is not None:
        flags = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in plan.manifest.dataset.options.items())
        echo(f"  dataset: kdlab data make-detection {plan.manifest.dataset.source} {dataset_root(plan.out_dir)} {flags}")
    for task in build_tasks(plan):
        after = f"  (after {', '.join(task.deps)})" if task.deps else ""
        command = task.args[0].command() if task.fn is task_run else ""
        if task.key.startswith("pretrained:"):
            command = plan.teacher(task.key.split(":", 1)[1]).command()
        echo(f"  {task.key}{after}" + (f"\n      {command}" if command else ""))
    for line in problem_lines(plan):
        echo(line)
    if options.doc is not None:
        from kdlab.checkpoint_io import atomic_write_text

        atomic_write_text(options.doc, render_document(plan, None), what="--doc")
        echo(f"wrote {options.doc} (protocol and command; no results)")
    return plan


def problem_lines(plan: SuitePlan) -> list[str]:
    """The dry run's closing lines: absent (method, pair)s, missing files, invalid configs, the verdict."""
    lines = []
    problems = plan.problems
    if plan.absent:
        lines.append(f"absent ({len(plan.absent)} (method, pair) without a config; not run, listed in the report):")
        lines += [f"  {a.method} on {a.pair}: no {shown_path(a.config)}" for a in plan.absent]
    if problems.missing:
        lines.append(f"missing ({len(problems.missing)} file(s); the suite cannot start until they exist):")
        lines += [f"  {entry.line()}" for entry in problems.missing.values()]
    if problems.invalid:
        lines.append(f"invalid ({len(problems.invalid)} config(s) that do not validate):")
        lines += [f"  {line}" for line in problems.invalid]
    if problems.exit_code:
        verdict = {2: "configs do not validate (exit 2)", 4: "configs validate, files are missing (exit 4)"}
        lines.append(f"not ready: {verdict[problems.exit_code]}")
    elif plan.is_paired:
        lines.append("ready: every config validates and every file is present")
    return lines


__all__ = [
    "PRETRAINED_LINK",
    "PlannedRun",
    "RunOutcome",
    "SuiteInterrupted",
    "SuiteOptions",
    "SuitePlan",
    "SuiteResult",
    "build_tasks",
    "dry_run",
    "plan_suite",
    "problem_lines",
    "run_suite",
]
