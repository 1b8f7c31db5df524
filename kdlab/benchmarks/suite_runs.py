"""The suite's units of work: one training run, one teacher cache, SSKD's teacher head, the teacher's evaluation.

Each ``task_*`` function is module-level and takes picklable arguments, so the
scheduler (:mod:`kdlab.benchmarks.suite_schedule`) can run it in a worker
process; each leaves its result on disk (run folder, cache folder, JSON file)
and returns a small summary.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from kdlab.benchmarks.suite_manifest import SuiteError

RUN_FILE = "suite_run.json"  # per run folder: the wall time the suite measured
CACHE_LINK = "teacher_cache"  # per run folder: a link to the seed's shared cache
#: fields every per-seed cache holds, so each cached method finds what its terms read
CACHE_FIELDS = ("embedding", "logits")
EXIT_INTERRUPTED = 3


class SuiteInterrupted(RuntimeError):
    """A run stopped before completing (signal, time limit); the suite stops there."""

    def __init__(self, message: str, exit_code: int = EXIT_INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[Any, ...]:  # keep exit_code across process boundaries
        return (type(self), (str(self), self.exit_code))


@dataclass(frozen=True)
class PlannedRun:
    """One training run: a config, its overrides and where it goes."""

    method: str
    seed: int
    config: Path
    out_dir: Path
    overrides: tuple[str, ...]
    cache: Optional[Path] = None  # the seed's shared teacher cache (None: live teacher or no teacher)
    pairs: tuple[str, ...] = ()  # suites with pairs: the pairs this run is reported in (one, or several sharing it)
    instance: Optional[str] = None  # suites with pairs: the run's folder below runs/<method>/ (pair or student)
    teacher: Optional[str] = None  # suites with pairs: the label of the teacher it distils from

    @property
    def key(self) -> str:
        """The run's task key: ``run:<method>:<seed>``, with pairs ``run:<method>:<instance>:<seed>``."""
        if self.instance is None:
            return f"run:{self.method}:{self.seed}"
        return f"run:{self.method}:{self.instance}:{self.seed}"

    @property
    def label(self) -> str:
        """How progress lines name the run."""
        if self.instance is None:
            return f"{self.method} seed {self.seed}"
        return f"{self.method} {self.instance} seed {self.seed}"

    @property
    def where(self) -> str:
        """How error messages name the run's method (and pairs)."""
        return f"method {self.method}" + (f" on {', '.join(self.pairs)}" if self.pairs else "")

    @property
    def prerequisite_group(self) -> str:
        """Runs whose terms' prerequisites (SSKD's teacher head) are the same: one method, one teacher."""
        return self.method if self.teacher is None else f"{self.method}:{self.teacher}"

    def load(self) -> Any:
        """The run's validated config."""
        from kdlab.config import load_config

        return load_config(self.config, self.overrides)

    def command(self) -> str:
        """The equivalent ``kdlab train`` command (display-only overrides left out)."""
        shown = [o for o in self.overrides if not o.startswith("trainer.progress=")]
        return " ".join(["kdlab train", shown_path(self.config), *shown])


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when below it (shorter, copy-pasteable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def apply_threads(cfg: Any) -> None:
    """``trainer.num_threads`` for work done outside the trainer (cache, evaluation), as the trainer applies it."""
    if cfg.trainer.num_threads is not None:
        import torch

        torch.set_num_threads(cfg.trainer.num_threads)


# ---------------------------------------------------------------------------------------------- reuse
def _planned_record(run: PlannedRun) -> Any:
    """The planned config as a RunRecord (the data views its terms need applied, as the trainer records it)."""
    from kdlab.config import dump_yaml
    from kdlab.engine.builders import with_views
    from kdlab.reporting import RunRecord

    return RunRecord(run.out_dir, yaml.safe_load(dump_yaml(with_views(run.load()))), [])


def _with_current_defaults(config: dict[str, Any]) -> Optional[dict[str, Any]]:
    """A recorded config read through today's schema: keys added since it was written get their defaults.

    None when it no longer validates (a key was removed or renamed): then it cannot match.
    """
    from kdlab.config import ConfigError, dump_yaml, from_dict

    try:
        return yaml.safe_load(dump_yaml(from_dict(config)))
    except ConfigError:
        return None


def matches_plan(run: PlannedRun) -> bool:
    """The folder holds a run of the planned config and seed (operational keys aside)."""
    from kdlab.reporting import RunRecord, group_key, load_run

    try:
        record = load_run(run.out_dir)
    except (ValueError, OSError):
        return False
    recorded = _with_current_defaults(record.config)
    if recorded is None:
        return False
    normalised = RunRecord(record.path, recorded, record.metrics, record.final, record.evaluation)
    return group_key(normalised) == group_key(_planned_record(run)) and record.seed == run.seed


def wants_evaluation(cfg: Any) -> bool:
    """Whether the config asks for post-training evaluation (kNN, linear probe, manifold)."""
    return bool(cfg.eval.knn or cfg.eval.linear_probe or cfg.eval.manifold)


def is_reusable(run: PlannedRun) -> bool:
    """A completed run of the planned config (with its eval.json when the config asks for one)."""
    from kdlab.reporting import EVAL_FILE, load_run

    if not (run.out_dir / "final.json").is_file() or not matches_plan(run):
        return False
    needs_eval = wants_evaluation(run.load())
    return load_run(run.out_dir).completed and (not needs_eval or (run.out_dir / EVAL_FILE).is_file())


def read_run_times(run_dir: Path) -> dict[str, Optional[float]]:
    """``{"wall_seconds", "cpu_seconds"}`` the suite recorded for a run folder (None when unknown)."""
    try:
        saved = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    return {key: float(saved[key]) if isinstance(saved.get(key), (int, float)) else None
            for key in ("wall_seconds", "cpu_seconds")}


# ---------------------------------------------------------------------------------------------- one run
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
    from kdlab.checkpoint_io import atomic_write_text

    atomic_write_text(run_dir / EVAL_FILE, json.dumps(results, indent=2, default=str) + "\n", what="the evaluation")
    return results


def _link_cache(run: PlannedRun) -> None:
    """``<run>/teacher_cache`` -> the seed's shared cache folder."""
    assert run.cache is not None
    link = run.out_dir / CACHE_LINK
    run.out_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if Path(os.readlink(link)) == run.cache:
            return
        link.unlink()
    elif link.exists():
        raise SuiteError(f"{link} exists and is not a link to the shared teacher cache {run.cache}")
    link.symlink_to(run.cache, target_is_directory=True)


def _inherit(run: PlannedRun, settings: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The ``inherit:`` evaluation of a finished run (kept when eval.json already holds it): its seconds."""
    from kdlab.benchmarks.suite_inherit import evaluate_inheritance, is_current

    if settings is None or is_current(run.out_dir, settings):
        return {}
    return {"inherit_seconds": evaluate_inheritance(run.load(), run.out_dir, settings)}


def task_run(run: PlannedRun, reuse: bool, inherit: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train one run (keep a completed one / resume an interrupted one with ``reuse``), evaluate it if asked.

    Without ``reuse`` an existing run folder is deleted first: the trainer appends to
    metrics.jsonl, so a stale one would mix two runs. ``inherit``: the suite's ``inherit:``
    settings for this run (:mod:`kdlab.benchmarks.suite_inherit`), evaluated after training
    and not counted in its wall time. Returns ``{"wall_seconds", "reused"}`` (and
    ``inherit_seconds`` when that evaluation ran).
    """
    from kdlab.engine.trainer import Trainer

    if reuse and is_reusable(run):
        return {**read_run_times(run.out_dir), "reused": True, **_inherit(run, inherit)}
    resume = None
    if run.out_dir.exists():
        interrupted = (run.out_dir / "checkpoints" / "last.pt").exists() and not (run.out_dir / "final.json").exists()
        if reuse and interrupted and matches_plan(run):
            resume = "auto"  # same config: the trainer continues exactly where it stopped
        else:
            shutil.rmtree(run.out_dir)
    if run.cache is not None:
        _link_cache(run)
    started, cpu_started = time.monotonic(), time.process_time()
    cfg = run.load()
    result = Trainer(cfg).fit(resume=resume)
    if not result.completed:
        raise SuiteInterrupted(
            f"{run.method} seed {run.seed} stopped before completing ({run.out_dir}); "
            "run the same command again to continue from there",
            result.exit_code or EXIT_INTERRUPTED,
        )
    if wants_evaluation(cfg):
        evaluate_run(cfg, run.out_dir)
    wall = round(time.monotonic() - started, 2)
    # CPU time of this process: what the run costs on an idle core, whatever else shares the machine
    cpu = round(time.process_time() - cpu_started, 2)
    summary = {"method": run.method, "seed": run.seed, "wall_seconds": wall, "cpu_seconds": cpu,
               "resumed": resume is not None}
    from kdlab.checkpoint_io import atomic_write_text

    atomic_write_text(run.out_dir / RUN_FILE, json.dumps(summary, indent=2) + "\n", what="the run summary")
    return {"wall_seconds": wall, "cpu_seconds": cpu, "reused": False, **_inherit(run, inherit)}


# ---------------------------------------------------------------------------------------------- shared work
def task_cache(run: PlannedRun, force: bool, verbose: bool) -> dict[str, Any]:
    """Make sure the seed's shared teacher cache exists with all of :data:`CACHE_FIELDS`.

    Built from ``run``'s config (its seed decides the data order and augmentation of
    every run reading the cache). ``force`` rebuilds a cache that does not fit (another
    teacher, other data); one that fits is kept. Returns ``{"seconds", "cpu_seconds", "built"}``.
    """
    from kdlab.cache import build_cache_from_config

    if run.cache is None:
        raise ValueError(f"{run.method} seed {run.seed} reads no teacher cache")
    cfg = run.load()
    apply_threads(cfg)
    started, cpu_started = time.monotonic(), time.process_time()
    _, built = build_cache_from_config(
        cfg, run.cache, epochs=cfg.trainer.epochs, fields=list(CACHE_FIELDS), force=force, progress=verbose
    )
    return {"seconds": round(time.monotonic() - started, 2), "cpu_seconds": round(time.process_time() - cpu_started, 2),
            "built": built}


def task_prerequisites(*runs: PlannedRun) -> dict[str, Any]:
    """Run what the loss terms of ``runs`` (one method's seeds) need finished first, as one task.

    SSKD's teacher head and FT's paraphraser are one run shared by every seed; FSP's and AB's
    initialisation stages train the student, so each seed has its own. The trainer would run them
    itself; doing it here keeps parallel workers from training the same prerequisite at once.
    """
    from kdlab.engine.trainer import Trainer
    from kdlab.methods.build import prerequisites

    started, cpu_started = time.monotonic(), time.process_time()
    done: dict[str, int] = {}
    seen: set[str] = set()
    for run in runs:
        for need in prerequisites(run.load()):
            produces = str(need.produces)
            if produces in seen or Path(need.produces).exists():
                continue
            seen.add(produces)
            resume = "auto"  # continues an interrupted one; starts fresh in an empty folder
            result = Trainer(need.config).fit(resume=resume)
            if not result.completed:
                raise SuiteInterrupted(f"{need.description} stopped early; run the same command again to continue")
            done[need.description] = done.get(need.description, 0) + 1
    ran = [what if count == 1 else f"{what} x{count} (one per seed)" for what, count in done.items()]
    return {"seconds": round(time.monotonic() - started, 2), "cpu_seconds": round(time.process_time() - cpu_started, 2),
            "ran": ran}


def task_pretrained(config: Path, overrides: tuple[str, ...], checkpoint: Path, out_file: Path) -> dict[str, Any]:
    """Top-1 of the pretrained teacher on the test split, as ``kdlab eval CONFIG --checkpoint`` prints it.

    Kept in ``out_file`` and reused while it names the same checkpoint.
    """
    from kdlab.config import load_config
    from kdlab.engine.report_eval import evaluate_checkpoint

    if out_file.is_file():
        saved = json.loads(out_file.read_text())
        if saved.get("checkpoint") == str(checkpoint):
            return {**saved, "reused": True}
    cfg = load_config(config, overrides)
    apply_threads(cfg)
    started, cpu_started = time.monotonic(), time.process_time()
    result = evaluate_checkpoint(cfg, str(checkpoint))
    result = {**result, "checkpoint": str(checkpoint), "wall_seconds": round(time.monotonic() - started, 2),
              "cpu_seconds": round(time.process_time() - cpu_started, 2)}
    from kdlab.checkpoint_io import atomic_write_text

    atomic_write_text(out_file, json.dumps(result, indent=2, default=str) + "\n", what="the teacher evaluation")
    return {**result, "reused": False}
