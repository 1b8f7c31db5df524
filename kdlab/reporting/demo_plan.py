"""The demo's plan: which configs run, with which overrides, in which order.

Each planned run is a ``kdlab train CONFIG OVERRIDES...`` invocation; see
:mod:`kdlab.reporting.demo` for the whole demo.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence


TEACHER = "teacher"
BASELINE = "student"
DEFAULT_METHODS = ("student", "kd", "ckd", "dkd", "sskd", "coss", "at", "fitnet")
#: the label-free method whose embedding is drawn next to the teacher's
EMBEDDING_METHOD = "coss"
EMBEDDING_PLOT = "embedding_teacher_vs_coss.png"
MARKER_FILE = "demo.json"
OUTPUT_FILES = ("results.json", "results.csv", "report.md", "accuracy.png", "training_curves.png", EMBEDDING_PLOT)


class DemoError(ValueError):
    """The demo cannot start (missing config, foreign output folder, bad option); the message says why."""


def default_config_dir() -> Path:
    """The ``demo`` recipes shipped inside the package: ``kdlab demo`` needs no checkout."""
    from kdlab.config.recipes import recipes_root

    return recipes_root() / "demo"


@dataclass
class DemoOptions:
    """What ``kdlab demo`` runs; the defaults are the full demo."""

    out_dir: Path = Path("runs/demo")
    seeds: int = 3
    epochs: Optional[int] = None  # None: the configs' own epochs
    methods: tuple[str, ...] = DEFAULT_METHODS
    config_dir: Optional[Path] = None
    teacher: Optional[Path] = None  # a trained teacher run folder to use instead of training one
    reuse: bool = False  # keep completed runs whose config matches, resume interrupted ones
    verbose: bool = False  # the trainer's per-epoch lines
    embedding_plot: bool = True
    command: str = "kdlab demo"

    def validate(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise DemoError(f"--seeds must be a positive integer, got {self.seeds!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1):
            raise DemoError(f"--epochs must be a positive integer, got {self.epochs!r}")
        if not self.methods:
            raise DemoError("--methods is empty: name at least one method, e.g. student kd")
        if TEACHER in self.methods:
            raise DemoError(f"--methods: {TEACHER!r} is always trained first; list only student methods")
        duplicates = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if duplicates:
            raise DemoError(f"--methods lists {duplicates} more than once")


@dataclass
class PlannedRun:
    """One ``kdlab train`` invocation of the demo."""

    method: str
    seed: int
    config_path: Path
    out_dir: Path
    overrides: list[str]

    def command(self) -> str:
        """The equivalent ``kdlab train`` command line (display-only overrides left out)."""
        shown = [o for o in self.overrides if not o.startswith("trainer.progress=")]
        return " ".join(["kdlab train", shown_path(self.config_path), *shown])


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter, copy-pasteable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def plan_runs(options: DemoOptions) -> list[PlannedRun]:
    """The teacher (unless given) then every method for seed 0, every method for seed 1, ...

    Seeds outermost: an interrupted demo has complete comparisons for the first seeds.
    """
    config_dir = Path(options.config_dir) if options.config_dir else default_config_dir()
    names = ([] if options.teacher else [TEACHER]) + list(options.methods)
    missing = [name for name in names if not (config_dir / f"{name}.yaml").is_file()]
    if missing:
        raise DemoError(
            f"no demo config for {', '.join(missing)} in {config_dir} (expected "
            f"{', '.join(f'{m}.yaml' for m in missing)}); pick others with --methods or point --configs at them"
        )
    out = Path(options.out_dir)
    teacher_dir = Path(options.teacher) if options.teacher else out / TEACHER
    common = ["trainer.progress=" + _trainer_progress(options.verbose)]
    if options.epochs is not None:
        common.append(f"trainer.epochs={options.epochs}")
    plan: list[PlannedRun] = []
    if not options.teacher:
        plan.append(
            PlannedRun(TEACHER, 0, config_dir / f"{TEACHER}.yaml", teacher_dir,
                       [f"trainer.out_dir={teacher_dir}", "trainer.seed=0", *common])
        )
    for seed in range(options.seeds):
        for method in options.methods:
            run_dir = out / method / f"seed{seed}"
            overrides = [f"trainer.out_dir={run_dir}", f"trainer.seed={seed}", *common]
            if _distils(config_dir / f"{method}.yaml"):
                overrides.append(f"teacher.checkpoint={teacher_dir}")
            plan.append(PlannedRun(method, seed, config_dir / f"{method}.yaml", run_dir, overrides))
    return plan


def _trainer_progress(verbose: bool) -> str:
    if verbose:
        return "lines"
    return "bar" if sys.stdout.isatty() else "none"


def _distils(config_path: Path) -> bool:
    """Whether the config has a teacher (then the demo points it at the demo's teacher)."""
    from kdlab.config import load_config

    teacher = load_config(config_path).teacher
    return teacher.name is not None or teacher.checkpoint is not None


def check_configs(plan: Sequence[PlannedRun]) -> None:
    """Load and validate every config with its overrides before anything trains."""
    from kdlab.config import load_config

    for run in plan:
        load_config(run.config_path, run.overrides)
