"""``kdlab bench suite SUITE_DIR``: a real-data benchmark of every method, seeds included.

A suite is a folder of ordinary kdlab configs plus ``suite.yaml`` (see
:mod:`kdlab.benchmarks.suite_manifest`). Running it:

1. evaluates the pretrained teacher on the test split (as ``kdlab eval``) and
   fine-tunes it briefly with the supervised trainer (``teacher.yaml``);
2. for each seed, builds one teacher-output cache (logits + embeddings of the
   exact augmented batches of that seed) shared by every method marked
   ``teacher_cache: true``, so the teacher runs once per seed instead of once
   per method;
3. trains every method for every seed with the one trainer (seeds outermost:
   an interrupted suite has whole comparisons for its first seeds); label-free
   runs are then scored by a linear probe (``eval.json``);
4. aggregates the run folders with :mod:`kdlab.reporting` (the rows of
   ``kdlab report`` / ``kdlab demo``) and writes ``results.json`` and a Markdown
   report (:mod:`kdlab.benchmarks.suite_report`).

Layout of the output folder::

    <out>/suite.json                    what ran, options, timings, failures (marks the folder as a suite's)
    <out>/teacher_pretrained.json       the pretrained teacher's evaluation
    <out>/teacher/                      the teacher fine-tune run
    <out>/teacher_cache/seed<k>/        the per-seed teacher caches
    <out>/runs/<method>/seed<k>/        one run per method and seed (+ suite_run.json: wall time)
    <out>/results.json, report.md       the rows and the report

Running the same command again continues: completed runs of the same config
are kept, interrupted ones resume exactly (``--fresh`` starts over).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml

import kdlab
from kdlab.benchmarks.suite_manifest import (
    TEACHER,
    MethodSpec,
    SuiteError,
    SuiteManifest,
    load_manifest,
    select_methods,
)

Echo = Callable[[str], None]

MARKER_FILE = "suite.json"
RUN_FILE = "suite_run.json"  # per run folder: the wall time the suite measured
PRETRAINED_FILE = "teacher_pretrained.json"
CACHE_LINK = "teacher_cache"  # per run folder: a link to the seed's shared cache
#: fields every per-seed cache holds, so each cached method finds what its terms read
CACHE_FIELDS = ("embedding", "logits")
EXIT_FAILURES = 1
EXIT_INTERRUPTED = 3


class SuiteInterrupted(RuntimeError):
    """A run stopped before completing (signal, time limit); the suite stops there."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------- options / plan
@dataclass
class SuiteOptions:
    """What ``kdlab bench suite`` runs; ``None`` means the manifest's (or ``--mini``'s) value."""

    suite_dir: Path
    out_dir: Optional[Path] = None  # default: runs/bench/<name> (or <name>-mini)
    seeds: Optional[int] = None
    methods: Optional[tuple[str, ...]] = None
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
class PlannedRun:
    """One training run: a config, its overrides and where it goes."""

    method: str
    seed: int
    config: Path
    out_dir: Path
    overrides: tuple[str, ...]
    cache: Optional[Path] = None  # the seed's shared teacher cache (None: live teacher)

    def load(self) -> Any:
        """The run's validated config."""
        from kdlab.config import load_config

        return load_config(self.config, self.overrides)

    def command(self) -> str:
        """The equivalent ``kdlab train`` command (display-only overrides left out)."""
        shown = [o for o in self.overrides if not o.startswith("trainer.progress=")]
        return " ".join(["kdlab train", _shown(self.config), *shown])


@dataclass
class SuitePlan:
    """Everything the suite will do, resolved and validated before anything trains."""

    manifest: SuiteManifest
    options: SuiteOptions
    out_dir: Path
    seeds: int
    methods: tuple[MethodSpec, ...]
    pretrained: Path  # the pretrained teacher weights
    teacher_overrides: tuple[str, ...]  # the teacher config's overrides (pretrained weights, data path)
    evaluate_pretrained: bool
    teacher_run: Optional[PlannedRun]  # the fine-tune, or None (distil from the pretrained weights)
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def teacher_weights(self) -> Path:
        """The file every student distils from."""
        if self.teacher_run is None:
            return self.pretrained
        return self.teacher_run.out_dir / "checkpoints" / "last.pt"

    def cache_dir(self, seed: int) -> Path:
        return self.out_dir / "teacher_cache" / f"seed{seed}"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when below it (shorter, copy-pasteable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resolve_existing(raw: Any, what: str, source: Path, hint: str) -> Path:
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


def plan_suite(options: SuiteOptions) -> SuitePlan:
    """Resolve the manifest and the options into runs; check paths and configs (nothing trains)."""
    manifest = load_manifest(options.suite_dir)
    mini = manifest.mini
    seeds = options.seeds if options.seeds is not None else (mini.seeds if options.mini else manifest.seeds)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SuiteError(f"--seeds must be a positive integer, got {seeds!r}")
    wanted = options.methods if options.methods is not None else (mini.methods if options.mini else None)
    methods = select_methods(manifest, wanted)
    finetune = mini.finetune if options.mini else manifest.teacher.finetune
    evaluate_pretrained = mini.evaluate_pretrained if options.mini else manifest.teacher.evaluate_pretrained
    default_out = Path("runs") / "bench" / (manifest.name + ("-mini" if options.mini else ""))
    out_dir = Path(options.out_dir if options.out_dir is not None else default_out).expanduser().resolve()
    common = (*(mini.overrides if options.mini else ()), *options.overrides, _progress(options.verbose))

    teacher_config = manifest.teacher.config
    teacher_base = (*common, _data_override(teacher_config, common))
    if options.teacher_checkpoint is not None:
        pretrained = _resolve_existing(options.teacher_checkpoint, "--teacher-checkpoint", Path("the command line"),
                                       "Pass an existing teacher weights file.")
    else:
        from kdlab.config import load_config

        pretrained = _resolve_existing(
            load_config(teacher_config, teacher_base).model.checkpoint, "model.checkpoint", teacher_config,
            "The suite needs the pretrained teacher weights: put them there or pass --teacher-checkpoint PATH.",
        )
    teacher_overrides = (*teacher_base, f"model.checkpoint={pretrained}")
    teacher_run = None
    if finetune:
        teacher_dir = out_dir / TEACHER
        teacher_run = PlannedRun(
            TEACHER, 0, teacher_config, teacher_dir, (*teacher_overrides, f"trainer.out_dir={teacher_dir}", "trainer.seed=0")
        )
    plan = SuitePlan(
        manifest, options, out_dir, seeds, methods, pretrained, teacher_overrides, evaluate_pretrained, teacher_run
    )
    data_overrides = {spec.name: _data_override(spec.config, common) for spec in methods}
    for seed in range(seeds):
        for spec in methods:
            run_dir = out_dir / "runs" / spec.name / f"seed{seed}"
            overrides = [*common, data_overrides[spec.name], f"trainer.out_dir={run_dir}", f"trainer.seed={seed}"]
            cache = None
            if _distils(spec.config, overrides):
                overrides.append(f"teacher.checkpoint={plan.teacher_weights}")
                if spec.teacher_cache and options.teacher_cache:
                    cache = plan.cache_dir(seed)
                    # a link inside the run folder: every seed's config then names "<run>/teacher_cache",
                    # so `kdlab report` groups the seeds of a method together
                    overrides.append(f"distill.teacher_cache={run_dir / CACHE_LINK}")
            plan.runs.append(PlannedRun(spec.name, seed, spec.config, run_dir, tuple(overrides), cache))
    check_configs(plan)
    return plan


def _distils(config: Path, overrides: Sequence[str]) -> bool:
    from kdlab.config import load_config

    teacher = load_config(config, overrides).teacher
    return teacher.name is not None or teacher.checkpoint is not None


def check_configs(plan: SuitePlan) -> None:
    """Validate every config and every loss term (names, parameters) before anything trains.

    Distillation runs are checked against the pretrained teacher: the fine-tuned one
    does not exist yet.
    """
    from kdlab.config import ConfigError
    from kdlab.methods.build import prerequisites

    runs = ([plan.teacher_run] if plan.teacher_run else []) + [r for r in plan.runs if r.seed == 0]
    for run in runs:
        overrides = [o if not o.startswith("teacher.checkpoint=") else f"teacher.checkpoint={plan.pretrained}"
                     for o in run.overrides if not o.startswith("distill.teacher_cache=")]
        try:
            cfg = PlannedRun(run.method, run.seed, run.config, run.out_dir, tuple(overrides)).load()
            prerequisites(cfg)  # validates every term's name and parameters
        except ConfigError as err:
            raise SuiteError(f"method {run.method} ({_shown(run.config)}): {err}") from None


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
        for name in (TEACHER, "runs", "teacher_cache", PRETRAINED_FILE, "results.json", "report.md"):
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
        "methods": [spec.name for spec in plan.methods],
        "overrides": list(options.overrides),
        "teacher": str(plan.pretrained),
        "teacher_finetune": plan.teacher_run is not None,
        "teacher_cache": options.teacher_cache,
        **extra,
    }
    (plan.out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- one run
@dataclass
class RunOutcome:
    """A finished run as the report needs it."""

    run: PlannedRun
    record: Any  # kdlab.reporting.RunRecord
    wall_seconds: Optional[float]  # the suite's measurement (setup, training, evaluation)
    reused: bool = False


def _planned_record(run: PlannedRun) -> Any:
    """The planned config as a RunRecord (the data views its terms need applied, as the trainer records it)."""
    from kdlab.config import dump_yaml
    from kdlab.engine.builders import with_views
    from kdlab.reporting import RunRecord

    return RunRecord(run.out_dir, yaml.safe_load(dump_yaml(with_views(run.load()))), [])


def _matches_plan(run: PlannedRun) -> bool:
    """The folder holds a run of the planned config and seed (operational keys aside)."""
    from kdlab.reporting import group_key, load_run

    try:
        record = load_run(run.out_dir)
    except (ValueError, OSError):
        return False
    return group_key(record) == group_key(_planned_record(run)) and record.seed == run.seed


def _wants_evaluation(cfg: Any) -> bool:
    return bool(cfg.eval.knn or cfg.eval.linear_probe or cfg.eval.manifold)


def _is_reusable(run: PlannedRun) -> bool:
    from kdlab.reporting import EVAL_FILE, load_run

    if not (run.out_dir / "final.json").is_file() or not _matches_plan(run):
        return False
    needs_eval = _wants_evaluation(run.load())
    return load_run(run.out_dir).completed and (not needs_eval or (run.out_dir / EVAL_FILE).is_file())


def evaluate_run(cfg: Any, run_dir: Path) -> dict[str, dict[str, Any]]:
    """What the config's ``eval.*`` asks (kNN, linear probe, manifold) on last.pt and best.pt -> ``eval.json``.

    The layout is the one :mod:`kdlab.reporting` reads (``{"last": ..., "best": ...}``).
    """
    from kdlab.engine.report_eval import evaluate_checkpoint
    from kdlab.reporting import EVAL_FILE

    options = dict(knn=cfg.eval.knn, linear_probe=cfg.eval.linear_probe, manifold=cfg.eval.manifold)
    last, best = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    results = {"last": evaluate_checkpoint(cfg, str(last), **options)}
    if best.is_file() and best.read_bytes() != last.read_bytes():
        results["best"] = evaluate_checkpoint(cfg, str(best), **options)
    else:
        results["best"] = dict(results["last"], checkpoint=str(best))
    (run_dir / EVAL_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def _link_cache(run: PlannedRun) -> None:
    """``<run>/teacher_cache`` -> the seed's shared cache folder."""
    assert run.cache is not None
    link = run.out_dir / CACHE_LINK
    run.out_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == run.cache:
            return
        if link.is_dir() and not link.is_symlink():
            raise SuiteError(f"{link} is a folder, expected a link to the shared cache {run.cache}")
        link.unlink()
    link.symlink_to(run.cache, target_is_directory=True)


def _read_wall(run_dir: Path) -> Optional[float]:
    path = run_dir / RUN_FILE
    try:
        value = json.loads(path.read_text()).get("wall_seconds")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def execute(run: PlannedRun, *, reuse: bool) -> RunOutcome:
    """Train one run (or keep a completed one / resume an interrupted one) and evaluate it if asked."""
    from kdlab.engine.trainer import Trainer
    from kdlab.reporting import load_run

    if reuse and _is_reusable(run):
        return RunOutcome(run, load_run(run.out_dir), _read_wall(run.out_dir), reused=True)
    resume = None
    if run.out_dir.exists():
        interrupted = (run.out_dir / "checkpoints" / "last.pt").exists() and not (run.out_dir / "final.json").exists()
        if reuse and interrupted and _matches_plan(run):
            resume = "auto"  # same config: the trainer continues exactly where it stopped
        else:
            shutil.rmtree(run.out_dir)  # the trainer appends to metrics.jsonl: never mix two runs
    if run.cache is not None:
        _link_cache(run)
    started = time.monotonic()
    cfg = run.load()
    result = Trainer(cfg).fit(resume=resume)
    if not result.completed:
        raise SuiteInterrupted(
            f"{run.method} seed {run.seed} stopped before completing ({run.out_dir}); "
            "run the same command again to continue from there",
            result.exit_code or EXIT_INTERRUPTED,
        )
    if _wants_evaluation(cfg):
        evaluate_run(cfg, run.out_dir)
    wall = time.monotonic() - started
    (run.out_dir / RUN_FILE).write_text(
        json.dumps({"method": run.method, "seed": run.seed, "wall_seconds": round(wall, 2), "resumed": resume is not None},
                   indent=2) + "\n"
    )
    return RunOutcome(run, load_run(run.out_dir), wall)


# ---------------------------------------------------------------------------------------------- teacher and caches
def evaluate_pretrained(plan: SuitePlan) -> dict[str, Any]:
    """Top-1 of the pretrained teacher on the test split (what ``kdlab eval teacher.yaml --checkpoint`` prints)."""
    from kdlab.engine.report_eval import evaluate_checkpoint

    path = plan.out_dir / PRETRAINED_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("checkpoint") == str(plan.pretrained):
            return saved
    from kdlab.config import load_config

    cfg = load_config(plan.manifest.teacher.config, plan.teacher_overrides)
    started = time.monotonic()
    result = evaluate_checkpoint(cfg, str(plan.pretrained))
    result = {**result, "checkpoint": str(plan.pretrained), "wall_seconds": round(time.monotonic() - started, 2)}
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def build_cache(run: PlannedRun, *, force: bool, verbose: bool) -> tuple[float, bool]:
    """Make sure the seed's shared cache exists (all of :data:`CACHE_FIELDS`); returns (seconds, built now)."""
    from kdlab.cache import build_cache_from_config

    assert run.cache is not None
    cfg = run.load()
    started = time.monotonic()
    _, built = build_cache_from_config(
        cfg, run.cache, epochs=cfg.trainer.epochs, fields=list(CACHE_FIELDS), force=force, progress=verbose
    )
    return time.monotonic() - started, built


# ---------------------------------------------------------------------------------------------- the suite
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


def _score(outcome: RunOutcome) -> str:
    from kdlab.reporting import run_accuracy

    accuracy = run_accuracy(outcome.record)
    if accuracy["final"] is None:
        return "no top-1 recorded"
    name = "linear-probe top-1" if accuracy["metric"] == "linear_top1" else "top-1"
    return f"{name} {accuracy['final']:.2f}%"


def run_suite(options: SuiteOptions, echo: Echo = print) -> SuiteResult:
    """Run the suite (see the module docstring) and write its results; returns them with an exit code."""
    import torch

    from kdlab.benchmarks.suite_report import summarize_suite, write_outputs

    plan = plan_suite(options)
    prepare_out_dir(plan)
    started_at = datetime.now(timezone.utc)
    _write_marker(plan, {"started": started_at.isoformat(timespec="seconds")})
    total = len(plan.runs) + (1 if plan.teacher_run else 0)
    echo(
        f"kdlab bench suite {plan.manifest.name}: {len(plan.methods)} method(s) x {plan.seeds} seed(s)"
        f"{' + teacher fine-tune' if plan.teacher_run else ''} into {plan.out_dir}"
    )
    clock, cpu_clock = time.monotonic(), time.process_time()
    previous_threads = torch.get_num_threads()  # the trainer applies trainer.num_threads process-wide
    outcomes: list[RunOutcome] = []
    failures: list[dict[str, Any]] = []
    timings: dict[str, Any] = {"caches": {}}
    pretrained_eval: Optional[dict[str, Any]] = None
    teacher_outcome: Optional[RunOutcome] = None
    exit_code = 0
    index = 0
    try:
        if plan.evaluate_pretrained:
            pretrained_eval = evaluate_pretrained(plan)
            timings["teacher_pretrained_eval"] = pretrained_eval.get("wall_seconds")
            echo(f"teacher (pretrained {_shown(plan.pretrained)}): top-1 {pretrained_eval['val_top1']:.2f}% on the test split")
        fresh_teacher = False
        if plan.teacher_run is not None:
            index += 1
            teacher_outcome = execute(plan.teacher_run, reuse=True)
            fresh_teacher = not teacher_outcome.reused
            echo(f"[{index}/{total}] teacher fine-tune: {_score(teacher_outcome)} "
                 f"({'reused' if teacher_outcome.reused else f'{teacher_outcome.wall_seconds:.0f}s'})")
        failed_caches: dict[int, str] = {}
        for run in plan.runs:
            index += 1
            try:
                if run.cache is not None:
                    if run.seed in failed_caches:
                        raise RuntimeError(f"the teacher cache of seed {run.seed} failed: {failed_caches[run.seed]}")
                    if run.seed not in timings["caches"]:
                        try:
                            seconds, built = build_cache(run, force=fresh_teacher, verbose=options.verbose)
                        except Exception as err:  # noqa: BLE001 - recorded, the cached runs of the seed fail with it
                            failed_caches[run.seed] = str(err)
                            raise
                        timings["caches"][run.seed] = {"seconds": round(seconds, 2), "built": built}
                        if built:
                            echo(f"teacher cache seed {run.seed}: built in {seconds:.0f}s ({_shown(run.cache)})")
                outcome = execute(run, reuse=not fresh_teacher)
            except SuiteInterrupted:
                raise
            except Exception as err:  # noqa: BLE001 - one failing method must not sink a 90-minute suite
                failures.append({"method": run.method, "seed": run.seed, "error": f"{type(err).__name__}: {err}"})
                echo(f"[{index}/{total}] {run.method} seed {run.seed}: FAILED: {type(err).__name__}: {err}")
                if not options.keep_going:
                    raise
                continue
            outcomes.append(outcome)
            when = "reused" if outcome.reused else f"{outcome.wall_seconds:.0f}s"
            elapsed = time.monotonic() - clock
            echo(f"[{index}/{total}] {run.method} seed {run.seed}: {_score(outcome)} ({when}; {elapsed / 60:.1f} min elapsed)")
    except SuiteInterrupted as err:
        echo(f"stopped: {err}")
        exit_code = err.exit_code
    finally:
        torch.set_num_threads(previous_threads)
    if failures and exit_code == 0:
        exit_code = EXIT_FAILURES
    seconds, cpu_seconds = time.monotonic() - clock, time.process_time() - cpu_clock
    rows = summarize_suite(plan, outcomes, teacher_outcome, pretrained_eval)
    result = SuiteResult(plan, rows, outcomes, failures, timings, started_at, seconds, cpu_seconds, _load_average(),
                         exit_code)
    result.files = write_outputs(result)
    _write_marker(
        plan,
        {"started": started_at.isoformat(timespec="seconds"), "finished": exit_code == 0,
         "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1), "load_average": result.load_average,
         "timings": timings, "failures": failures, "exit_code": exit_code},
    )
    return result


def dry_run(options: SuiteOptions, echo: Echo = print) -> SuitePlan:
    """Plan and validate without training; print the runs and, with ``options.doc``, write the protocol document."""
    from kdlab.benchmarks.suite_report import render_document

    plan = plan_suite(options)
    echo(f"suite {plan.manifest.name}: {len(plan.methods)} method(s) x {plan.seeds} seed(s) into {plan.out_dir}")
    echo(f"teacher: {_shown(plan.pretrained)}" + (" (evaluated, then fine-tuned)" if plan.teacher_run else ""))
    if plan.teacher_run is not None:
        echo("  " + plan.teacher_run.command())
    for run in plan.runs:
        cache = f"  [teacher cache {_shown(run.cache)}]" if run.cache else ""
        echo(f"  {run.command()}{cache}")
    if options.doc is not None:
        Path(options.doc).parent.mkdir(parents=True, exist_ok=True)
        Path(options.doc).write_text(render_document(plan, None))
        echo(f"wrote {options.doc} (protocol and command; no results)")
    return plan
