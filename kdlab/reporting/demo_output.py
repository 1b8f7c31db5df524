"""What ``kdlab demo`` leaves behind: results.json / .csv, the figures and report.md."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import kdlab
from kdlab.reporting.aggregate import RunGroup, seed_finals
from kdlab.reporting.demo_plan import BASELINE, EMBEDDING_PLOT, TEACHER
from kdlab.reporting.plots import plot_accuracy, plot_training_curves
from kdlab.reporting.tables import format_seconds, to_csv, to_markdown

if TYPE_CHECKING:
    from kdlab.reporting.demo import DemoResult
    from kdlab.reporting.demo_plan import DemoOptions, PlannedRun


def machine_summary() -> str:
    """CPU, OS, Python and torch versions, threads and the device the runs used."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    device = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    processor = platform.processor() or platform.machine()
    return (
        f"{platform.platform()} ({processor}), {usable} usable CPU core(s) of {os.cpu_count()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, kdlab {kdlab.__version__}; device {device}"
    )


def _threads(plan: Sequence["PlannedRun"]) -> str:
    """``trainer.num_threads`` of the runs (the trainer applies it), or torch's default."""
    from kdlab.config import load_config

    values = {load_config(run.config_path, run.overrides).trainer.num_threads for run in plan}
    if values == {None}:
        return f"torch default ({os.cpu_count()})"
    return ", ".join(str(v if v is not None else "default") for v in sorted(values, key=str))


def data_summary(config_path: Path, overrides: Sequence[str]) -> str:
    """Dataset, split sizes, image size and augmentation of a config, measured by the data layer."""
    import torch

    from kdlab.config import load_config
    from kdlab.data import build_data

    cfg = load_config(config_path, overrides)
    data = build_data(cfg.data, seed=cfg.trainer.seed, device=torch.device("cpu"))
    test = data.eval.num_samples
    text = (
        f"`data.name={cfg.data.name}`: {data.train_size} training / {test} test images, "
        f"{data.num_classes} classes, {data.in_chans} channel(s) at {data.image_size}x{data.image_size}; "
        f"augmentation `{cfg.data.augment}`, batch {cfg.data.batch_size}"
    )
    if cfg.data.name == "digits":
        text += " (scikit-learn's embedded handwritten digits, fixed stratified 80/20 split; no download)"
    if test:
        text += f". One test image is {100.0 / test:.2f} percentage points of top-1."
    return text


def _groups(result: "DemoResult") -> list[RunGroup]:
    groups: dict[str, RunGroup] = {}
    for outcome in result.outcomes:
        groups.setdefault(outcome.run.method, RunGroup(outcome.run.method, [])).runs.append(outcome.record)
    return list(groups.values())


def _verdict(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain statements of which methods differ from the plain student by more than 2 standard errors.

    Two standard errors is a rough rule: with three seeds a proper t-test would ask for more.
    """
    lines = []
    teacher = next((row for row in rows if row["method"] == TEACHER), None)
    if teacher is not None and teacher.get("gain") is not None:
        lines.append(
            f"the teacher is {teacher['gain']:+.2f} points from the plain student"
            + (": little room for any method to help on this data" if teacher["gain"] < 1.0 else "")
        )
    for row in rows:
        gain, se = row.get("gain"), row.get("gain_se")
        if row["method"] in (TEACHER, BASELINE) or gain is None:
            continue
        probe = " (a linear probe, not a trained classifier: see *)" if row.get("metric") == "linear_top1" else ""
        if se is None or se == 0:
            lines.append(f"{row['method']}: {gain:+.2f} points{probe}; too few seeds to judge the spread")
        elif abs(gain) <= 2 * se:
            lines.append(f"{row['method']}: {gain:+.2f} ± {se:.2f} points{probe}, within seed noise of the plain student")
        else:
            word = "better" if gain > 0 else "worse"
            lines.append(f"{row['method']}: {gain:+.2f} ± {se:.2f} points{probe}, {word} than the plain student "
                         "by more than 2 standard errors")
    return lines


def run_commands(plan: Sequence["PlannedRun"]) -> list[str]:
    """The command of the first planned run of each method (what repeats one run alone)."""
    shown: set[str] = set()
    commands = []
    for run in plan:
        if run.method not in shown and run.overrides:
            shown.add(run.method)
            commands.append(run.command())
    return commands


def cost_text(cpu_seconds: float, load_average: Optional[float]) -> str:
    """``, N of CPU time; 1-minute load average L ...``: what a demo's wall time should be read with."""
    return (f", {format_seconds(cpu_seconds)} of CPU time"
            + (f"; 1-minute load average {load_average:g} at the end (wall time grows when other work "
               "shares the cores; CPU time does not)" if load_average is not None else ""))


def render_report(
    result: "DemoResult",
    options: "DemoOptions",
    plan: Sequence["PlannedRun"],
    started_at: datetime,
    data_text: str,
    figures: Sequence[Path],
) -> str:
    """report.md: the table, how it was made (command, configs, data, machine, date) and the figures."""
    rows = result.rows
    ran = [o for o in result.outcomes if not o.reused]
    lines = ["# kdlab demo", "", to_markdown(rows), "## Verdict", "",
             "Gain over the plain student ± its standard error; 2 standard errors is a rough threshold with few seeds.",
             ""]
    verdict = _verdict(rows)
    lines += [f"- {line}" for line in verdict] or ["- (no student methods besides the plain student)"]
    lines += [
        "",
        "## How this was made",
        "",
        f"- command: `{options.command}`",
        f"- date: {started_at.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- time: {format_seconds(result.seconds)} wall for {len(ran)} trained run(s)"
        + (f" ({len(result.outcomes) - len(ran)} reused)" if len(ran) < len(result.outcomes) else "")
        + cost_text(result.cpu_seconds, result.load_average),
        f"- data: {data_text}",
        f"- machine: {machine_summary()}; torch threads {_threads(plan)}",
        f"- seeds: {options.seeds} per student method (`trainer.seed` 0..{options.seeds - 1}); the teacher is one run",
        "- every run is an ordinary config run by the one trainer; to repeat one alone:",
        "",
        "```bash",
    ]
    lines += run_commands(plan)
    lines += [
        "```",
        "",
        "- each run's folder holds config.yaml (the resolved config), metrics.jsonl (one line per epoch), "
        "final.json and checkpoints/; label-free runs also eval.json (kNN, linear probe, manifold metrics). "
        f"`kdlab report {options.out_dir}` rebuilds this table from them.",
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{path.stem}]({path.name})" for path in figures]
    return "\n".join(lines) + "\n"


def write_outputs(
    result: "DemoResult", options: "DemoOptions", plan: Sequence["PlannedRun"], started_at: datetime
) -> list[Path]:
    """Write results.json, results.csv, the PNG figures and report.md; return the paths written."""
    from kdlab.checkpoint_io import atomic_write_text  # here: building the CLI parser imports no torch

    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    results = out / "results.json"
    atomic_write_text(results, json.dumps(result.rows, indent=2) + "\n")
    csv_path = out / "results.csv"
    atomic_write_text(csv_path, to_csv(result.rows))
    written += [results, csv_path]
    groups = _groups(result)
    figures = [
        plot_accuracy(result.rows, out / "accuracy.png", seed_values=seed_finals(groups),
                      baseline=BASELINE if any(r["method"] == BASELINE for r in result.rows) else None),
        plot_training_curves(groups, out / "training_curves.png"),
    ]
    embedding = out / EMBEDDING_PLOT
    if embedding.is_file():
        figures.append(embedding)
    written += figures
    first = plan[0] if plan else None
    data_text = data_summary(first.config_path, first.overrides) if first else "see the runs' config.yaml"
    report = out / "report.md"
    atomic_write_text(report, render_report(result, options, plan, started_at, data_text, figures))
    written.append(report)
    return written


def profile_line(method: str, seed: int, run_dir: Path, profile: dict[str, Any]) -> str:
    """``profile of kd seed 0 (runs/demo/kd/seed0/profile.json): student resnet8 vs teacher resnet20: ...``."""
    from kdlab.reporting.demo_plan import shown_path

    return f"profile of {method} seed {seed} ({shown_path(Path(run_dir) / 'profile.json')}): {profile['summary']}"


def print_summary(result: "DemoResult", echo: Any = print, out_dir: Optional[Path] = None) -> None:
    """The results table as text, where everything was written, then the profile of the best distilled student."""
    from kdlab.reporting.tables import footnotes, to_text

    echo("")
    echo(to_text(result.rows).rstrip())
    for note in footnotes(result.rows):
        echo(f"  {note}")
    names = ", ".join(path.name for path in result.files)
    echo(
        f"wrote {out_dir or result.out_dir}/: {names} "
        f"(total {format_seconds(result.seconds)} wall, {format_seconds(result.cpu_seconds)} CPU)"
    )
    if result.profile_line:
        echo(result.profile_line)
