"""What a benchmark suite writes: rows (``results.json``) and a Markdown document.

Rows are :mod:`kdlab.reporting` rows (the schema of ``kdlab report`` and the
demo's ``results.json``: ``method, top1_mean, top1_std, seeds, best_top1_*,
gain, gain_se, seconds_*, ...``) plus what only the suite knows:
``wall_seconds_mean/std`` (setup + training + evaluation per run, as the suite
measured it), ``teacher_cache`` (whether the method read the per-seed cache),
``published_top1`` (the manifest's reference number), ``baseline`` (the method
``gain`` is measured against) and, on the teacher row, ``pretrained_top1``. Suites
with pairs add ``pair`` and the published-number fields of
:func:`kdlab.benchmarks.suite_published.compare` (rows and document:
:mod:`kdlab.benchmarks.suite_report_pairs`).

The document states the exact command, the protocol (resolved from the configs,
plus the suite's README), the machine and date, then either the results (table,
cost, teacher before/after, whether the methods separate, the ordering against
the published one) or a clearly marked "Results: not yet run on this machine".
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from kdlab.benchmarks import suite_report_pairs as pairs_report
from kdlab.benchmarks.suite_compare import (
    RESOLVED_SE,
    apply_gains,
    gain_over,
    ordering_lines,
    separation_lines,
    spearman,
    target_lines,
    verdict,
)
from kdlab.benchmarks.suite_carry import CARRIED_MARK, carried_note
from kdlab.benchmarks.suite_manifest import TEACHER
from kdlab.engine.builders import channels_last

if TYPE_CHECKING:
    from kdlab.benchmarks.suite import RunOutcome, SuitePlan, SuiteResult



# ---------------------------------------------------------------------------------------------- rows
def _mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    from kdlab.reporting import mean_std

    return mean_std(list(values))


def _teacher_row(
    plan: "SuitePlan", teacher: Optional["RunOutcome"], pretrained: Optional[dict[str, Any]]
) -> Optional[dict[str, Any]]:
    from kdlab.reporting import RunGroup, summarize

    pretrained_top1 = pretrained.get("val_top1") if pretrained else None
    if teacher is not None:
        row = summarize(RunGroup(TEACHER, [teacher.record]))
        row["wall_seconds_mean"], row["wall_seconds_std"] = teacher.wall_seconds, None
        row["cpu_seconds_mean"], row["cpu_seconds_std"] = teacher.cpu_seconds, None
    elif pretrained_top1 is not None:
        # no fine-tune: the teacher row is the pretrained weights' evaluation (same schema)
        row = {
            "method": TEACHER, "seeds": 1, "seed_values": [None], "metric": "val_top1",
            "top1_mean": pretrained_top1, "top1_std": None, "best_top1_mean": pretrained_top1, "best_top1_std": None,
            "seconds_mean": None, "seconds_std": None, "epochs": 0, "completed": 1,
            "description": f"pretrained teacher {plan.pretrained}", "runs": [],
            "wall_seconds_mean": pretrained.get("wall_seconds") if pretrained else None, "wall_seconds_std": None,
            "cpu_seconds_mean": pretrained.get("cpu_seconds") if pretrained else None, "cpu_seconds_std": None,
        }
    else:
        return None
    row["pretrained_top1"] = pretrained_top1
    row["checkpoint"] = str(plan.teacher_weights)
    row["config"] = _relative(plan.manifest.teacher.config)
    return row


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when that is short (``../shared/...``), else absolute."""
    absolute = Path(path).resolve()
    try:
        relative = os.path.relpath(absolute, Path.cwd().resolve())
    except ValueError:  # another drive
        return str(absolute)
    return relative if relative.split(os.sep)[:2].count(os.pardir) < 2 else str(absolute)


def summarize_suite(
    plan: "SuitePlan",
    outcomes: Sequence["RunOutcome"],
    teacher: Optional["RunOutcome"] = None,
    pretrained: Optional[dict[str, Any]] = None,
    teacher_evals: Optional[dict[str, dict[str, Any]]] = None,
) -> list[dict[str, Any]]:
    """One row per method (teacher first, then the manifest's order) with gains over each method's baseline.

    Suites with pairs: one row per (pair, method), see :func:`kdlab.benchmarks.suite_report_pairs.pair_rows`.
    """
    from kdlab.reporting import RunGroup, summarize

    if plan.is_paired:
        from kdlab.benchmarks.suite_report_pairs import pair_rows

        return pair_rows(plan, outcomes, teacher_evals or {})
    rows: list[dict[str, Any]] = []
    teacher_row = _teacher_row(plan, teacher, pretrained)
    if teacher_row is not None:
        rows.append(teacher_row)
    published = plan.manifest.published.top1
    for spec in plan.methods:
        members = [o for o in outcomes if o.run.method == spec.name]
        if not members:
            continue
        row = summarize(RunGroup(spec.name, [m.record for m in members]))
        for key in ("wall_seconds", "cpu_seconds"):
            values = [getattr(m, key) for m in members if getattr(m, key) is not None]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        row["teacher_cache"] = any(m.run.cache is not None for m in members)
        row["published_top1"] = published.get(spec.name)
        row["config"] = _relative(spec.config)
        row["command"] = members[0].run.command()
        rows.append(row)
    apply_gains(rows, plan.manifest.baseline_of)
    if plan.manifest.inherit is not None:
        from kdlab.benchmarks.suite_inherit import add_corruption_ratios

        add_corruption_ratios(rows, plan.manifest.inherit.references)
    return rows


# ---------------------------------------------------------------------------------------------- the document
def _demote_headings(text: str) -> str:
    """Markdown headings one level deeper (``#`` -> ``##``), code fences left alone."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"^#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


def _terms(cfg: Any) -> str:
    parts = []
    for term in cfg.distill.terms:
        params = ", ".join(f"{k} {v}" for k, v in term.items() if k not in ("name", "weight", "key"))
        parts.append(f"{term.get('weight', 1.0):g} {term['name']}" + (f" ({params})" if params else ""))
    return " + ".join(parts) + ("" if cfg.distill.labels else "; label-free")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _kwargs(kwargs: dict[str, Any]) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else ""


def _schedule(cfg: Any) -> str:
    s = cfg.schedule
    text = s.name
    if s.name == "step":
        text += f" (x{s.gamma:g} at epochs {', '.join(str(m) for m in s.milestones)})"
    if s.warmup_epochs:
        text += f", {s.warmup_epochs:g} warm-up epoch(s)"
    return text


def _student_lines(plan: "SuitePlan", cfg: Any) -> list[str]:
    d, t, o = cfg.data, cfg.trainer, cfg.optim
    subset = f"a fixed random subset of {d.subset} training images (the same for every seed)" if d.subset else "every training image"
    return [
        f"- data: `{_relative(Path(d.root)) if d.root else d.name}`; students train on {subset}; every "
        "evaluation uses the whole test split",
        f"- input: augmentation `{d.augment}` (padding {d.crop_padding}), normalised with mean {list(d.mean or [])} "
        f"/ std {list(d.std or [])}, `data.pipeline={d.pipeline}`",
        f"- student: `{cfg.model.name}`{_kwargs(cfg.model.kwargs)} from scratch, {_plural(t.epochs, 'epoch')}, "
        f"batch {d.batch_size}, {o.name.upper()} lr {o.lr:g} (momentum {o.momentum:g}, weight decay "
        f"{o.weight_decay:g}), schedule {_schedule(cfg)}, evaluated on the test split every "
        f"{_plural(t.eval_every, 'epoch')} and after the last",
        f"- compute: precision {t.precision}, channels_last {str(channels_last(cfg)).lower()}, "
        f"{t.num_threads or 'torch default'} thread(s) per run, {plan.jobs} run(s) side by side",
    ]


def _detection_student_lines(plan: "SuitePlan", cfg: Any) -> list[str]:
    d, t, o = cfg.data, cfg.trainer, cfg.optim
    lines = []
    spec = plan.manifest.dataset
    if spec is not None:
        chosen = {**spec.options, **(plan.manifest.mini.dataset if plan.options.mini else {})}
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items())
        lines.append(f"- data: canvases made by `kdlab data make-detection {spec.source} <out>/data {flags}` "
                     "(train canvases from the source's train split, test canvases from its test split); "
                     "COCO AP on every test canvas")
    else:
        lines.append(f"- data: `{d.name}` at `{d.root}`; COCO AP on the whole evaluation split")
    backbone = cfg.model.kwargs.get("backbone_checkpoint")
    start = f"backbone from `{backbone}`" if backbone else "from scratch"
    lines += [
        f"- input: augmentation `{d.augment}`" + (f", scale jitter {d.scale_jitter}" if d.scale_jitter else "")
        + "; the detector resizes and normalises its input itself",
        f"- student: `{cfg.model.name}`{_kwargs(cfg.model.kwargs)}, {start}, {_plural(t.epochs, 'epoch')}, "
        f"batch {d.batch_size}, {o.name.upper()} lr {o.lr:g} (momentum {o.momentum:g}, weight decay "
        f"{o.weight_decay:g}), schedule {_schedule(cfg)}, evaluated on the test split every "
        f"{_plural(t.eval_every, 'epoch')} and after the last",
        f"- compute: precision {t.precision}, {t.num_threads or 'torch default'} thread(s) per run, "
        f"{plan.jobs} run(s) side by side",
    ]
    return lines


def protocol_lines(plan: "SuitePlan") -> list[str]:
    """The protocol as the resolved configs define it (so the document cannot drift from the configs)."""
    from kdlab.config import load_config

    student_run = plan.runs[0] if plan.runs else None
    lines: list[str] = []
    if student_run is not None:
        cfg = load_config(student_run.config, student_run.overrides)
        lines += _detection_student_lines(plan, cfg) if cfg.task == "detection" else _student_lines(plan, cfg)
    teacher_cfg = load_config(plan.manifest.teacher.config, plan.teacher_overrides)
    teacher_text = (f"- teacher: `{teacher_cfg.model.name}`{_kwargs(teacher_cfg.model.kwargs)} "
                    f"from `{_relative(plan.pretrained)}`")
    if plan.teacher_run is not None:
        ft = plan.teacher_run.load()
        subset = f"{ft.data.subset} training images" if ft.data.subset else "every training image"
        teacher_text += (
            f", {'trained' if ft.task == 'detection' else 'fine-tuned'} {_plural(ft.trainer.epochs, 'epoch')} on {subset} ({ft.optim.name.upper()} lr {ft.optim.lr:g}, "
            f"{_schedule(ft)}, batch {ft.data.batch_size}); students distil from its last checkpoint"
        )
    else:
        teacher_text += " (not fine-tuned)"
    lines.append(teacher_text)
    lines.append(
        f"- seeds: {plan.seeds} per method (`trainer.seed` 0..{plan.seeds - 1}: initialisation, data order and "
        "augmentation)"
    )
    cached = [spec.name for spec in plan.methods if spec.teacher_cache and plan.options.teacher_cache]
    if cached:
        lines.append(
            f"- teacher cache: one per seed (the teacher's logits and embeddings of that seed's exact augmented "
            f"batches), read by {', '.join(cached)}; the other distillation methods run the teacher live"
        )
    lines += ["", "| method | config | loss terms | teacher |", "|---|---|---|---|"]
    for spec in plan.methods:
        run = next(r for r in plan.runs if r.method == spec.name)
        cfg = run.load()
        teacher = "-" if not any(o.startswith("teacher.checkpoint=") for o in run.overrides) else (
            "cache" if run.cache is not None else "live")
        lines.append(f"| {spec.name} | `{_relative(spec.config)}` | {_terms(cfg)} | {teacher} |")
    return lines


def _teacher_source(plan_row: dict[str, Any]) -> str:
    if plan_row["method"] == TEACHER:
        return "(the teacher's fine-tune)" if plan_row.get("epochs") else "(evaluation)"
    if plan_row.get("teacher_cache"):
        return "cache"
    return "live" if plan_row.get("teacher") else "-"


def results_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The reporting table (``kdlab report``'s columns) plus the wall time per run the suite measured."""
    from kdlab.reporting.tables import footnotes, format_seconds, table_cells

    header, body = table_cells(rows)
    header = [*header, "wall/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row, cells in zip(rows, body):
        if row.get("carried_from"):
            cells = [f"{cells[0]} {CARRIED_MARK}", *cells[1:]]
        lines.append("| " + " | ".join([*cells, format_seconds(row.get("wall_seconds_mean"))]) + " |")
    lines.append("")
    lines += [f"- {note}" for note in footnotes(rows)]
    carried = carried_note(rows)
    if carried is not None:
        lines.append(f"- {carried}")
    lines.append("- wall/run = setup, training, evaluation and (label-free runs) the linear probe, per run, as the "
                 "suite measured it (see Cost).")
    return lines


def _cost_lines(result: "SuiteResult") -> list[str]:
    from kdlab.reporting.tables import format_seconds

    lines = ["| method | runs | training / run | wall / run | CPU / run | teacher |", "|---|---|---|---|---|---|"]
    for row in result.rows:
        name = row["method"] + (f" ({row['pair']})" if row.get("pair") else "")
        lines.append(
            f"| {name} | {row.get('seeds', '')} | {format_seconds(row.get('seconds_mean'))} | "
            f"{format_seconds(row.get('wall_seconds_mean'))} | {format_seconds(row.get('cpu_seconds_mean'))} | "
            f"{_teacher_source(plan_row=row)} |"
        )
    lines.append("")
    caches = result.timings.get("caches", {})
    built = {seed: c for seed, c in caches.items() if c.get("built")}
    if built:
        lines.append(
            "- teacher cache, built once per seed (wall / CPU): "
            + ", ".join(f"{'seed ' if s.isdigit() else ''}{s}: {format_seconds(c.get('seconds'))} / {format_seconds(c.get('cpu_seconds'))}"
                        for s, c in built.items())
        )
    for method, info in result.timings.get("prerequisites", {}).items():
        if info.get("ran"):
            lines.append(f"- {method}: {', '.join(info['ran'])}, before its runs (wall / CPU): "
                         f"{format_seconds(info.get('seconds'))} / {format_seconds(info.get('cpu_seconds'))}")
    if result.timings.get("teacher_pretrained_eval") is not None:
        lines.append(f"- pretrained teacher evaluation: {format_seconds(result.timings['teacher_pretrained_eval'])}")
    evals = result.timings.get("teacher_evals", {})
    if evals:
        lines.append("- teacher evaluations, once each: "
                     + ", ".join(f"{label}: {format_seconds(seconds)}" for label, seconds in evals.items()))
    lines.append(f"- all the suite's work, one task after another: {format_seconds(_total_work(result))} "
                 f"(divided among {result.plan.jobs} job(s) side by side)")
    if result.report_only:
        lines.append("- this report: written by `--report-only` from the runs an earlier invocation finished "
                     "(their times above are the ones measured when they trained)")
        return lines
    lines.append(
        f"- this invocation: {format_seconds(result.seconds)} wall"
        + (f"; 1-minute load average {result.load_average:g} at the end (wall time grows when other work "
           "shares the cores)" if result.load_average is not None else "")
        + ("; work finished by an earlier invocation was reused" if any(o.reused for o in result.outcomes) else "")
    )
    lines.append(
        f"- training: the trainer's epoch times; wall: setup, training, per-epoch evaluation and (label-free runs) "
        f"the linear probe, as the suite measured it with {result.plan.jobs} run(s) side by side; CPU: the CPU "
        "time of the process that ran it, which is what the run costs on an otherwise idle core"
    )
    return lines


def _total_work(result: "SuiteResult") -> float:
    """Seconds of all the suite's work one task after another (shared runs of a suite with pairs counted once)."""
    caches = result.timings.get("caches", {})
    shared = [c.get("seconds") or 0 for c in caches.values()] + [
        p.get("seconds") or 0 for p in result.timings.get("prerequisites", {}).values()]
    if result.plan.is_paired:
        runs = [o.wall_seconds or 0 for o in result.outcomes]
        evals = [s or 0 for s in result.timings.get("teacher_evals", {}).values()]
        return sum(runs) + sum(shared) + sum(evals)
    walls = [row.get("wall_seconds_mean", 0) * row.get("seeds", 0) for row in result.rows
             if row.get("wall_seconds_mean") is not None and row["method"] != TEACHER]
    teacher = next((r for r in result.rows if r["method"] == TEACHER), {})
    total = sum(walls) + sum(shared) + (teacher.get("wall_seconds_mean") or 0)
    if result.timings.get("teacher_pretrained_eval") is not None and teacher.get("epochs"):
        total += result.timings["teacher_pretrained_eval"]
    return total


def _teacher_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    row = next((r for r in rows if r["method"] == TEACHER), None)
    if row is None:
        return ["The teacher was not evaluated in this run (`--mini` skips it)."]
    before, after = row.get("pretrained_top1"), row.get("top1_mean")
    if row.get("metric") == "val_map":
        return [f"- the teacher detector after its training: AP {after:.2f}" if after is not None else "- no AP recorded"]
    parts = []
    if before is not None:
        parts.append(f"pretrained weights: {before:.2f}% top-1 on the test split (`kdlab eval`)")
    if after is not None and row.get("epochs"):
        parts.append(f"after the fine-tune: {after:.2f}%" + (f" ({after - before:+.2f})" if before is not None else ""))
    return ["- " + p for p in parts]


def _without_dry_run(command: str) -> str:
    """The command a ``--dry-run`` stands for: the same one without ``--dry-run``."""
    return " ".join(part for part in command.split(" ") if part != "--dry-run")


def render_document(plan: "SuitePlan", result: Optional["SuiteResult"]) -> str:
    """The Markdown document of a suite: protocol and command, then the results or a 'not yet run' section."""
    from kdlab.reporting.demo_output import machine_summary

    manifest = plan.manifest
    lines = [f"# Benchmarks: {manifest.title}", ""]
    if result is not None:
        lines += [
            f"Generated by `kdlab bench suite` on {result.started_at.strftime('%Y-%m-%d %H:%M UTC')} "
            "from the run folders it trained; rerun the command below to regenerate it.",
            "",
        ]
    else:
        lines += ["Generated by `kdlab bench suite --dry-run` from the suite's configs: the protocol and the command, "
                  "no results yet.", ""]
    command = plan.options.command if result is not None else _without_dry_run(plan.options.command)
    lines += ["## Command", "", "```bash", command, "```", ""]
    lines += ["## Protocol as configured", "", "Read from the resolved configs of the runs:", ""]
    lines += (pairs_report.protocol_lines(plan) if plan.is_paired else protocol_lines(plan)) + [""]
    readme = manifest.folder / "README.md"
    if readme.is_file():
        body = readme.read_text().strip().splitlines()
        if body and body[0].startswith("# "):
            body = body[1:]  # the README's own title: this section's heading replaces it
        lines += [f"## About the suite (`{_relative(readme)}`)", "", _demote_headings("\n".join(body)).strip(), ""]
    if result is None:
        if plan.is_paired:
            lines += ["## Published numbers", ""] + pairs_report.published_numbers_lines(plan) + [""]
        what = ("one table per pair with the published numbers beside, the rows outside the published band, the "
                "teachers and the cost of every method" if plan.is_paired else
                "the table, the cost of every method, the teacher before/after its fine-tune, whether the methods "
                "separate beyond seed noise and how the ordering compares with the published one")
        lines += [
            "## Results: not yet run on this machine",
            "",
            "The full suite has not been run here yet, so this page has no numbers. Run the command above "
            f"(it regenerates this page with {what}). \"About the suite\" above has the measured cost of single runs "
            "and the estimated total time.",
            "",
            "## Machine",
            "",
            f"- {machine_summary()}",
            f"- this page: written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `--dry-run` "
            "(configs checked, nothing trained)",
            "",
        ]
        return "\n".join(lines) + "\n"
    rows = result.rows
    lines += ["## Results", ""] + (pairs_report.results_lines(plan, rows) if plan.is_paired else results_table(rows))
    lines += [""]
    if result.failures:
        lines += ["Failed or skipped work (left out of the table):", ""]
        lines += [f"- {f['label']}: {f['error']}" for f in result.failures] + [""]
    if plan.is_paired:
        lines += ["## Against the published numbers", ""] + pairs_report.published_lines(plan, rows) + [""]
        lines += ["### Overview", ""] + pairs_report.overview_lines(plan, rows) + [""]
        lines += ["## Teachers", ""] + pairs_report.teacher_lines(plan, rows) + [""]
        lines += ["## Cost", ""] + _cost_lines(result) + [""]
        return "\n".join(lines + _machine_lines(plan, result)) + "\n"
    lines += ["## Teacher", ""] + _teacher_lines(rows) + [""]
    if manifest.inherit is not None:
        from kdlab.benchmarks.suite_inherit import report_lines as inherit_lines

        lines += ["## What the networks inherit: robustness, transfer, retrieval", "",
                  "Measured on `checkpoints/last.pt` of each run after training (`inherit:` in suite.yaml; the same "
                  "as `kdlab eval` with `--corruptions`, `--transfer`, `--retrieval`, `--manifold`), mean ± std over "
                  "seeds:", ""] + inherit_lines(manifest.inherit, rows) + [""]
    lines += ["## Does the suite separate the methods?", "", f"Gain over the plain {manifest.baseline} "
              f"(± standard error of the difference over seeds):", ""]
    lines += separation_lines(plan, rows) or ["- (no method besides the baseline)"]
    lines += target_lines(rows, manifest.baseline)
    if manifest.published.source or manifest.published.top1 or manifest.published.order:
        lines += ["", "## Ordering against the published CIFAR-100 ordering", ""] + ordering_lines(plan, rows)
    else:
        lines += [""]
    lines += ["## Cost", ""] + _cost_lines(result) + [""]
    return "\n".join(lines + _machine_lines(plan, result)) + "\n"


def _machine_lines(plan: "SuitePlan", result: "SuiteResult") -> list[str]:
    from kdlab.reporting.demo_output import machine_summary

    return [
        "## Machine",
        "",
        f"- {machine_summary()}",
        f"- date: {result.started_at.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- run folders: `{_relative(plan.out_dir)}` (`kdlab report {_relative(plan.out_dir / 'runs')}` rebuilds the "
        "table from them)",
        "",
    ]


def write_outputs(result: "SuiteResult") -> list[Path]:
    """results.json and report.md in the output folder (and --results-json / --doc); returns the paths."""
    plan = result.plan
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.rows, indent=2, default=str) + "\n"
    document = render_document(plan, result)
    targets = [(out / "results.json", text, "--out"), (out / "report.md", document, "--out")]
    if plan.options.results_json is not None:
        targets.append((Path(plan.options.results_json), text, "--results-json"))
    if plan.options.doc is not None:
        targets.append((Path(plan.options.doc), document, "--doc"))
    from kdlab.checkpoint_io import atomic_write_text

    return [atomic_write_text(path, content, what=option) for path, content, option in targets]


__all__ = [
    "RESOLVED_SE",
    "apply_gains",
    "gain_over",
    "ordering_lines",
    "protocol_lines",
    "render_document",
    "results_table",
    "separation_lines",
    "spearman",
    "summarize_suite",
    "target_lines",
    "verdict",
    "write_outputs",
]
