"""What ``kdlab demo --task detection`` leaves behind: results.json / .csv, report.md, the AP table."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from kdlab.reporting.demo_output import _threads, cost_text, machine_summary, run_commands
from kdlab.reporting.demo_plan import BASELINE, TEACHER
from kdlab.reporting.tables import format_mean_std, format_seconds, to_csv

if TYPE_CHECKING:
    from kdlab.reporting.demo_plan import PlannedRun
    from kdlab.reporting.detection_demo import DetectionDemoOptions, DetectionDemoResult

#: (header, row key prefix) of the AP columns, in AP points
_AP_COLUMNS = (("AP", "map"), ("AP50", "map50"), ("AP75", "map75"))


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """method, n, AP, AP50, AP75, gain in AP over the plain student, training time per run."""
    header = ["method", "n", *[name for name, _ in _AP_COLUMNS], f"AP gain vs {BASELINE}", "time/run"]
    body = []
    for row in rows:
        cells = [row["method"], str(row.get("seeds", ""))]
        cells += [format_mean_std(row.get(f"{key}_mean"), row.get(f"{key}_std"), 1) for _, key in _AP_COLUMNS]
        if row["method"] == BASELINE:
            cells.append("(baseline)")
        else:
            gain, se = row.get("map_gain"), row.get("map_gain_se")
            cells.append("-" if gain is None else f"{gain:+.1f}" + (f" (±{se:.1f})" if se is not None else ""))
        cells.append(format_seconds(row.get("seconds_mean")))
        body.append(cells)
    return header, body


def footnotes(rows: Sequence[dict[str, Any]]) -> list[str]:
    notes = [
        "AP = COCO AP@[.50:.95] (pycocotools) in points (100 x val_map) of the final epoch's weights on the "
        "test canvases; AP50 / AP75 at IoU .50 / .75; mean ± sample std over n seeds (one seed: no spread shown).",
        f"AP gain = AP minus the plain {BASELINE}'s (± standard error of the difference with >= 2 seeds each).",
        "time/run = training seconds per run (data, setup and evaluation excluded).",
    ]
    for row in rows:
        if row.get("warning"):
            notes.append(f"WARNING {row['method']}: {row['warning']}.")
    return notes


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    header, body = table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines.append("")
    lines += [f"- {note}" for note in footnotes(rows)]
    return "\n".join(lines) + "\n"


def to_text(rows: Sequence[dict[str, Any]]) -> str:
    header, body = table_cells(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([render(header), "  ".join("-" * w for w in widths), *map(render, body)]) + "\n"


def verdict(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain statements about each distilled student vs the plain one, with the seed-noise caveat."""
    lines = []
    teacher = next((row for row in rows if row["method"] == TEACHER), None)
    if teacher is not None and teacher.get("map_gain") is not None:
        lines.append(f"the teacher is {teacher['map_gain']:+.1f} AP from the plain student")
    for row in rows:
        gain, se = row.get("map_gain"), row.get("map_gain_se")
        if row["method"] in (TEACHER, BASELINE) or gain is None:
            continue
        if se is None or se == 0:
            lines.append(f"{row['method']}: {gain:+.1f} AP over the plain student with {row['seeds']} seed(s) each: "
                         "too few seeds to tell a gain from seed noise (run with --seeds 3 or more)")
        elif abs(gain) <= 2 * se:
            lines.append(f"{row['method']}: {gain:+.1f} ± {se:.1f} AP, within seed noise of the plain student")
        else:
            word = "better" if gain > 0 else "worse"
            lines.append(f"{row['method']}: {gain:+.1f} ± {se:.1f} AP, {word} than the plain student by more "
                         "than 2 standard errors")
    return lines


def data_text(result: "DetectionDemoResult") -> str:
    summary = result.data_summary
    options = summary.get("options", {})
    made = "reused (same make_detection.json)" if result.data_reused else f"made in {result.data_seconds:.1f}s"
    return (
        f"`{result.data_dir}`: {summary.get('train_canvases')} training canvases ({summary.get('train_objects')} "
        f"objects) and {summary.get('test_canvases')} test canvases ({summary.get('test_objects')} objects) of "
        f"{options.get('canvas')}x{options.get('canvas')} px, {options.get('min_objects')}-{options.get('max_objects')} "
        f"digits of {options.get('min_size')}-{options.get('max_size')} px each, {len(summary.get('classes', []))} "
        f"classes; scikit-learn's embedded digits (train canvases from its training split, test canvases from "
        f"its test split), `make_detection_dataset` seed {options.get('seed')}; {made}"
    )


def _make_command(result: "DetectionDemoResult") -> str:
    o = result.data_summary.get("options", {})
    return (f"kdlab data make-detection digits {result.data_dir} --seed {o.get('seed')} --train {o.get('train')} "
            f"--test {o.get('test')} --canvas {o.get('canvas')} --min-objects {o.get('min_objects')} "
            f"--max-objects {o.get('max_objects')} --min-size {o.get('min_size')} --max-size {o.get('max_size')}")


def render_report(result: "DetectionDemoResult", options: "DetectionDemoOptions", plan: Sequence["PlannedRun"],
                  started_at: datetime, figures: Sequence[Path]) -> str:
    ran = [o for o in result.outcomes if not o.reused]
    lines = ["# kdlab demo --task detection", "", to_markdown(result.rows), "## Verdict", ""]
    lines += [f"- {line}" for line in verdict(result.rows)] or ["- (no distilled students)"]
    lines += [
        "",
        "## How this was made",
        "",
        f"- command: `{options.command}`",
        f"- date: {started_at.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- time: {format_seconds(result.seconds)} wall (data, {len(ran)} trained run(s)"
        + (f", {len(result.outcomes) - len(ran)} reused" if len(ran) < len(result.outcomes) else "")
        + f", figure {format_seconds(result.plot_seconds)})" + cost_text(result.cpu_seconds, result.load_average),
        f"- data: {data_text(result)}",
        f"- machine: {machine_summary()}; torch threads {_threads(plan)}",
        f"- seeds: {options.seeds} per student method (`trainer.seed` 0..{options.seeds - 1}); the teacher is one "
        "run; the plain and the distilled student share data, epochs, schedule and seeds",
        "- every step is an ordinary command; to repeat one alone:",
        "",
        "```bash",
        _make_command(result),
    ]
    lines += run_commands(plan)
    lines += [
        "```",
        "",
        "- each run's folder holds config.yaml (the resolved config), metrics.jsonl, final.json and "
        f"checkpoints/. `kdlab report {options.out_dir} --baseline {BASELINE}` rebuilds the AP table from them.",
        "",
        "## Figures",
        "",
        "Predicted boxes (score >= 0.5, class and score) of each model's final weights on the first test "
        "canvases, next to the ground truth:",
        "",
    ]
    lines += [f"![{path.stem}]({path.name})" for path in figures]
    return "\n".join(lines) + "\n"


def write_outputs(result: "DetectionDemoResult", options: "DetectionDemoOptions", plan: Sequence["PlannedRun"],
                  started_at: datetime, figures: Sequence[Path]) -> list[Path]:
    """Write results.json, results.csv and report.md; return every file the demo wrote (figures included)."""
    from kdlab.checkpoint_io import atomic_write_text  # here: building the CLI parser imports no torch

    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    atomic_write_text(results, json.dumps(result.rows, indent=2) + "\n")
    csv_path = out / "results.csv"
    atomic_write_text(csv_path, to_csv(result.rows))
    report = out / "report.md"
    atomic_write_text(report, render_report(result, options, plan, started_at, figures))
    return [results, csv_path, report, *figures]


def print_summary(result: "DetectionDemoResult", echo: Any = print, out_dir: Optional[Path] = None) -> None:
    """The AP table as text, then where everything was written."""
    echo("")
    echo(to_text(result.rows).rstrip())
    for note in footnotes(result.rows):
        echo(f"  {note}")
    names = ", ".join(path.name for path in result.files)
    echo(f"wrote {out_dir or result.out_dir}/: {names} "
         f"(total {format_seconds(result.seconds)} wall, {format_seconds(result.cpu_seconds)} CPU)")
