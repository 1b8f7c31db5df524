"""``kdlab demo --task detection``: digits canvases, a detector teacher, two students, an AP table.

Like the classification demo (:mod:`kdlab.reporting.demo`), this is nothing but configs run one
after another with the trainer — ``configs/demo/detection/teacher.yaml``, then ``student.yaml``
and ``roi_ckd.yaml`` for each seed — each with a few ``key=value`` overrides
(``trainer.out_dir``, ``trainer.seed``, ``trainer.progress``, ``data.root``,
``teacher.checkpoint`` and, when asked, ``trainer.epochs``), exactly what
``kdlab train CONFIG OVERRIDES...`` does. The data are canvases of scikit-learn's embedded
digits written by :func:`kdlab.data.detection.make.make_detection_dataset` (``kdlab data
make-detection digits ...``); a data folder whose ``make_detection.json`` says it was made with
the same options is reused.

Layout of the output folder::

    <out>/data/                    the COCO-format canvases (make_detection.json says how)
    <out>/teacher/                 the teacher run (seed 0)
    <out>/<method>/seed<k>/        one run per student method and seed
    <out>/results.json, results.csv one row per method (schema: kdlab.reporting.aggregate)
    <out>/report.md                the table and how it was made
    <out>/detections.png           predicted boxes of every model on a few test canvases
    <out>/demo.json                what the demo ran (also marks the folder as the demo's)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from kdlab.data.detection.make import MakeDetectionOptions
from kdlab.reporting.aggregate import run_accuracy, run_extras
from kdlab.reporting.demo import DemoResult, _given_teacher, _load_average, summarize_outcomes
from kdlab.reporting.demo_exec import DemoInterrupted, RunOutcome, execute, prepare_out_dir, write_marker
from kdlab.reporting.demo_plan import (
    BASELINE,
    MARKER_FILE,
    TEACHER,
    DemoError,
    DemoOptions,
    PlannedRun,
    check_configs,
    default_config_dir,
    plan_runs,
)

__all__ = [
    "DATA_FOLDER",
    "DEFAULT_OUT",
    "DETECTION_METHODS",
    "FULL_DATA",
    "PLOT_FILE",
    "QUICK_DATA",
    "QUICK_EPOCHS",
    "DemoError",
    "DemoInterrupted",
    "DetectionDemoOptions",
    "available_methods",
    "detection_config_dir",
    "plan_detection_runs",
    "prepare_data",
    "run_detection_demo",
]

Echo = Callable[[str], None]

#: the student methods of the detection demo, each a configs/demo/detection/<method>.yaml
DETECTION_METHODS = ("student", "roi_ckd")
DEFAULT_OUT = Path("runs/demo-detection")
DATA_FOLDER = "data"
PLOT_FILE = "detections.png"
OUTPUT_FILES = ("results.json", "results.csv", "report.md", PLOT_FILE)
#: the canvases of the full demo: 1 to 3 digits of 12 to 28 px on 48 x 48 px
FULL_DATA = MakeDetectionOptions(seed=0, train=400, test=120, canvas=48, min_objects=1, max_objects=3,
                                 min_size=12, max_size=28)
#: ``--quick`` (tests): the same kind of canvases, far fewer, one epoch
QUICK_DATA = replace(FULL_DATA, train=48, test=16)
QUICK_EPOCHS = 1
DATA_SOURCE = "digits"


def detection_config_dir() -> Path:
    """The ``demo/detection`` recipes shipped inside the package (no checkout needed)."""
    return default_config_dir() / "detection"


def available_methods(config_dir: Optional[Path] = None) -> list[str]:
    """Student methods the detection demo can run: the ``<name>.yaml`` files besides teacher and _base_."""
    folder = Path(config_dir) if config_dir else detection_config_dir()
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in (TEACHER, "_base_"))


@dataclass
class DetectionDemoOptions:
    """What ``kdlab demo --task detection`` runs; the defaults are the full demo."""

    out_dir: Path = DEFAULT_OUT
    seeds: int = 1
    epochs: Optional[int] = None  # None: the configs' own epochs
    methods: tuple[str, ...] = DETECTION_METHODS
    data: MakeDetectionOptions = FULL_DATA
    config_dir: Optional[Path] = None
    teacher: Optional[Path] = None  # a trained teacher run folder to use instead of training one
    reuse: bool = False  # keep completed runs whose config matches, resume interrupted ones
    verbose: bool = False
    plot_images: int = 6  # test canvases drawn in detections.png (4 to 6 reads well)
    command: str = "kdlab demo --task detection"

    def as_demo_options(self) -> DemoOptions:
        """The classification demo's options with the same meaning (for the shared planning and folder code)."""
        return DemoOptions(
            out_dir=Path(self.out_dir), seeds=self.seeds, epochs=self.epochs, methods=tuple(self.methods),
            config_dir=Path(self.config_dir) if self.config_dir else detection_config_dir(),
            teacher=Path(self.teacher) if self.teacher else None, reuse=self.reuse, verbose=self.verbose,
            embedding_plot=False, command=self.command,
        )

    def validate(self) -> None:
        self.as_demo_options().validate()
        if BASELINE not in self.methods:
            raise DemoError(f"--methods must include {BASELINE!r}: the gains are measured against the plain student")
        if not 1 <= self.plot_images <= 12:
            raise DemoError(f"plot_images must be 1..12, got {self.plot_images}")
        try:
            self.data.validate()
        except ValueError as err:
            raise DemoError(f"canvas options: {err}") from None


# ------------------------------------------------------------------ data
def _data_matches(folder: Path, options: MakeDetectionOptions) -> bool:
    """``folder`` holds a complete set made from the digits with exactly ``options``."""
    try:
        made = json.loads((folder / "make_detection.json").read_text())
    except (OSError, ValueError):
        return False
    if made.get("source") != DATA_SOURCE or made.get("options") != asdict(options):
        return False
    for split, count in (("train2017", options.train), ("val2017", options.test)):
        if not (folder / "annotations" / f"instances_{split}.json").is_file():
            return False
        if not (folder / split).is_dir() or sum(1 for _ in (folder / split).glob("*.png")) != count:
            return False
    from kdlab.data.sources import open_digits

    return made.get("source_identity") == open_digits().fingerprint


def prepare_data(out_dir: Path, options: MakeDetectionOptions) -> tuple[Path, dict[str, Any], bool]:
    """``<out>/data``: reused when its make_detection.json matches, else (re)made. Returns (folder, summary, reused)."""
    from kdlab.data.detection.make import make_detection_dataset

    folder = Path(out_dir) / DATA_FOLDER
    if _data_matches(folder, options):
        return folder, json.loads((folder / "make_detection.json").read_text()), True
    if folder.exists():
        if not (folder / "make_detection.json").is_file() and any(folder.iterdir()):
            raise DemoError(f"{folder} exists and was not written by make-detection (no make_detection.json); "
                            "move it away or choose another --out")
        shutil.rmtree(folder)
    summary = make_detection_dataset(DATA_SOURCE, folder, options)
    return folder, summary, False


# ------------------------------------------------------------------ plan
def plan_detection_runs(options: DetectionDemoOptions) -> list[PlannedRun]:
    """The classification demo's plan (teacher, then every method for seed 0, 1, ...) over the
    detection configs, every run reading ``<out>/data``."""
    data_root = Path(options.out_dir) / DATA_FOLDER
    plan = plan_runs(options.as_demo_options())
    for run in plan:
        run.overrides.append(f"data.root={data_root}")
    return plan


def _prepare_out_dir(options: DetectionDemoOptions) -> None:
    """The classification demo's folder rules; a folder holding only the canvases (``data/``) is fine too."""
    out = Path(options.out_dir)
    if out.is_dir() and not (out / MARKER_FILE).exists():
        entries = {p.name for p in out.iterdir()}
        if entries == {DATA_FOLDER} and (out / DATA_FOLDER / "make_detection.json").is_file():
            return
    demo_options = options.as_demo_options()
    prepare_out_dir(demo_options)
    if not options.reuse and (out / MARKER_FILE).exists():
        for name in OUTPUT_FILES:  # the detection demo's own outputs the shared code does not know
            if (out / name).is_file():
                (out / name).unlink()


def progress_line(index: int, total: int, outcome: RunOutcome) -> str:
    """``[3/3] roi_ckd seed 0: AP 21.3, AP50 40.2 (41.0s)``."""
    head = f"[{index}/{total}] {outcome.run.method} seed {outcome.run.seed}: "
    ap = run_accuracy(outcome.record)["final"]
    ap50 = run_extras(outcome.record).get("val_map50")
    score = "no AP recorded" if ap is None else f"AP {ap:.1f}" + (f", AP50 {ap50:.1f}" if ap50 is not None else "")
    when = "reused" if outcome.reused else f"{outcome.wall_seconds:.1f}s"
    return f"{head}{score} ({when})"


def _detection_rows(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """The shared rows (AP points as ``map_*``), plus ``map75_*`` and the gain under its detection name."""
    rows = summarize_outcomes(outcomes)
    for row in rows:
        row["map75_mean"], row["map75_std"] = row.get("val_map75_mean"), row.get("val_map75_std")
        row["map_gain"], row["map_gain_se"] = row.get("gain"), row.get("gain_se")
    return rows


@dataclass
class DetectionDemoResult(DemoResult):
    data_dir: Path = DEFAULT_OUT / DATA_FOLDER
    data_summary: dict[str, Any] = field(default_factory=dict)
    data_reused: bool = False
    data_seconds: float = 0.0
    plot_seconds: float = 0.0


def run_detection_demo(options: DetectionDemoOptions, echo: Echo = print) -> DetectionDemoResult:
    """Run the whole detection demo; write results.json / .csv, report.md and detections.png."""
    import torch

    from kdlab.reporting.detection_demo_output import write_outputs
    from kdlab.reporting.detection_demo_plot import plot_detections

    options.validate()
    plan = plan_detection_runs(options)
    outcomes: list[RunOutcome] = [_given_teacher(Path(options.teacher))] if options.teacher else []
    _prepare_out_dir(options)
    started_at = datetime.now(timezone.utc)
    demo_options = options.as_demo_options()
    write_marker(demo_options, {"task": "detection", "started": started_at.isoformat(timespec="seconds")})
    clock, cpu_clock = time.monotonic(), time.process_time()
    data_dir, data_summary, data_reused = prepare_data(Path(options.out_dir), options.data)
    data_seconds = time.monotonic() - clock
    echo(
        f"kdlab demo --task detection: {'reused' if data_reused else 'made'} {options.data.train} train / "
        f"{options.data.test} test canvases in {data_dir} ({data_seconds:.1f}s); {len(plan)} runs "
        f"({'' if options.teacher else 'teacher + '}{len(options.methods)} method(s) x {options.seeds} seed(s))"
    )
    check_configs(plan)
    previous_threads = torch.get_num_threads()  # the configs set trainer.num_threads process-wide
    reuse_distilled = options.reuse
    try:
        for index, run in enumerate(plan, start=1):
            distils = any(o.startswith("teacher.checkpoint=") for o in run.overrides)
            # runs of remade canvases are stale even where their config reads the same
            reuse = (reuse_distilled if distils else options.reuse) and data_reused
            outcome = execute(run, reuse=reuse)
            if run.method == TEACHER and not outcome.reused:
                reuse_distilled = False  # a new teacher: students of the old one are stale
            outcomes.append(outcome)
            echo(progress_line(index, len(plan), outcome))
        rows = _detection_rows(outcomes)
        result = DetectionDemoResult(Path(options.out_dir), rows, outcomes, data_dir=data_dir,
                                     data_summary=data_summary, data_reused=data_reused, data_seconds=data_seconds)
        plot_clock = time.monotonic()
        plot = plot_detections(_plotted_runs(outcomes), Path(options.out_dir) / PLOT_FILE,
                               images=options.plot_images)
        result.plot_seconds = time.monotonic() - plot_clock
    finally:
        torch.set_num_threads(previous_threads)
    result.seconds, result.cpu_seconds = time.monotonic() - clock, time.process_time() - cpu_clock
    result.load_average = _load_average()
    result.files = write_outputs(result, options, plan, started_at, [plot])
    write_marker(
        demo_options,
        {"task": "detection", "started": started_at.isoformat(timespec="seconds"), "finished": True,
         "seconds": round(result.seconds, 1), "cpu_seconds": round(result.cpu_seconds, 1),
         "load_average": result.load_average, "data": asdict(options.data), "data_reused": data_reused,
         "runs": [str(run.out_dir) for run in plan]},
    )
    return result


def _plotted_runs(outcomes: list[RunOutcome]) -> list[tuple[str, Path]]:
    """(column title, run folder) of the first seed of every method, teacher first."""
    seen: dict[str, tuple[str, Path]] = {}
    for outcome in outcomes:
        if outcome.run.method in seen:
            continue
        ap = run_accuracy(outcome.record)["final"]
        score = f"AP {ap:.1f}" if ap is not None else "no AP"
        seed = "" if outcome.run.method == TEACHER else f" seed {outcome.run.seed}"
        seen[outcome.run.method] = (f"{outcome.run.method}{seed}\n({score})", outcome.record.path)
    return list(seen.values())
