"""Rows and Markdown of a suite with ``pairs:``: one table per pair, with the published numbers beside.

Rows are :mod:`kdlab.benchmarks.suite_report` rows plus ``pair`` (and, for shared runs,
``pairs``: every pair the run is reported in), the gain over each method's baseline *within
the pair*, and the published-number fields of :func:`kdlab.benchmarks.suite_published.compare`
(``published_top1``, ``published_source``, ``delta_top1``, ``delta_best_top1``,
``band_final``/``band_best``, ``outside_final``/``outside_best``). The teacher rows are each
distinct teacher's evaluation, one per pair it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from kdlab.benchmarks.suite_manifest import TEACHER, PairSpec
from kdlab.benchmarks.suite_published import MIN_BAND, STD_BAND, compare

if TYPE_CHECKING:
    from kdlab.benchmarks.suite import RunOutcome
    from kdlab.benchmarks.suite_plan import SuitePlan

#: marks a delta whose mean lies outside the published band
OUTSIDE = "!"


# ---------------------------------------------------------------------------------------------- rows
def _teacher_rows(plan: "SuitePlan", pair: PairSpec, evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from kdlab.benchmarks.suite_report import _relative

    rows = []
    for teacher in plan.teachers:
        value = evals.get(teacher.label)
        if pair.name not in teacher.pairs or not value or value.get("val_top1") is None:
            continue
        top1 = value["val_top1"]
        rows.append({
            "pair": pair.name, "method": TEACHER, "teacher_label": teacher.label, "seeds": 1, "seed_values": [None],
            "metric": "val_top1", "top1_mean": top1, "top1_std": None, "best_top1_mean": top1, "best_top1_std": None,
            "seconds_mean": None, "seconds_std": None, "epochs": 0, "completed": 1,
            "description": f"pretrained teacher {teacher.label}", "runs": [], "pretrained_top1": top1,
            "wall_seconds_mean": value.get("wall_seconds"), "wall_seconds_std": None,
            "cpu_seconds_mean": value.get("cpu_seconds"), "cpu_seconds_std": None,
            "checkpoint": _relative(teacher.checkpoint), "config": _relative(teacher.config),
        })
    return rows


def _method_row(spec: Any, pair: PairSpec, members: Sequence["RunOutcome"]) -> dict[str, Any]:
    from kdlab.benchmarks.suite_report import _mean_std, _relative
    from kdlab.reporting import RunGroup, summarize

    row = {"pair": pair.name, **summarize(RunGroup(spec.name, [m.record for m in members]))}
    for key in ("wall_seconds", "cpu_seconds"):
        values = [getattr(m, key) for m in members if getattr(m, key) is not None]
        row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
    run = members[0].run
    row["teacher_cache"] = any(m.run.cache is not None for m in members)
    row["teacher_label"] = run.teacher
    if len(run.pairs) > 1:
        row["pairs"] = list(run.pairs)  # one run reported in every pair that shares it
    row["config"] = _relative(run.config)
    row["command"] = run.command()
    return row


def pair_rows(plan: "SuitePlan", outcomes: Sequence["RunOutcome"], evals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (pair, method) that ran (teacher first), in the manifest's order, with the published fields."""
    from kdlab.benchmarks.suite_compare import apply_gains

    manifest = plan.manifest
    rows: list[dict[str, Any]] = []
    for pair in plan.pairs:
        block = _teacher_rows(plan, pair, evals)
        for spec in plan.methods:
            members = [o for o in outcomes if o.run.method == spec.name and pair.name in o.run.pairs]
            if members:
                block.append(_method_row(spec, pair, members))
        apply_gains(block, manifest.baseline_of)
        for row in block:
            row.update(compare(row, manifest.published.lookup(pair.name, row["method"])))
        rows += block
    return rows


# ---------------------------------------------------------------------------------------------- cells
def _delta(row: dict[str, Any], key: str, epoch: str) -> str:
    delta = row.get(f"delta_{key}")
    if delta is None:
        return "-"
    return f"{delta:+.2f}" + (f" {OUTSIDE}" if row.get(f"outside_{epoch}") else "")


def published_cells(row: dict[str, Any]) -> list[str]:
    """``published``, ``Δ final``, ``Δ best`` of one row ('-' without a published number)."""
    value = row.get("published_top1")
    return ["-" if value is None else f"{value:.2f}", _delta(row, "top1", "final"), _delta(row, "best_top1", "best")]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the table names it (several teachers of one pair keep their labels apart)."""
    if row["method"] == TEACHER and row.get("teacher_label"):
        return {**row, "method": f"{TEACHER} ({row['teacher_label']})"}
    return row


def pair_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The results table of one pair: the reporting columns, then published / Δ final / Δ best, then wall/run."""
    from kdlab.reporting.tables import format_seconds, table_cells

    header, body = table_cells([_shown(r) for r in rows])
    at = header.index("gain") + 1 if "gain" in header else 4
    header = [*header[:at], "published", "Δ final", "Δ best", *header[at:], "wall/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row, cells in zip(rows, body):
        cells = [*cells[:at], *published_cells(row), *cells[at:], format_seconds(row.get("wall_seconds_mean"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------- sections
def _pair_title(pair: PairSpec) -> str:
    return f"{pair.teacher} -> {pair.student}" + ("" if pair.name == f"{pair.teacher}_{pair.student}" else f" ({pair.name})")


def results_lines(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """One table per pair (the absent methods named below it), then the footnotes once."""
    from kdlab.reporting.tables import footnotes

    lines: list[str] = []
    for pair in plan.pairs:
        block = [r for r in rows if r["pair"] == pair.name]
        absent = [a.method for a in plan.absent if a.pair == pair.name]
        lines += [f"### {_pair_title(pair)}", ""]
        lines += pair_table(block) if block else ["(nothing finished for this pair)"]
        shared = [f"{r['method']} (also {', '.join(p for p in r['pairs'] if p != pair.name)})"
                  for r in block if r.get("pairs")]
        if shared:
            lines += ["", f"Shared runs, the same as in another pair: {', '.join(shared)}."]
        if absent:
            lines += ["", f"Absent (no config for this pair): {', '.join(absent)}."]
        lines.append("")
    lines += [f"- {note}" for note in footnotes(rows)]
    lines += [
        f"- published = the number the source reports for this (method, pair) (see \"Against the published "
        f"numbers\"); Δ = measured mean minus published, for the final and the best epoch; `{OUTSIDE}` = the mean lies "
        f"outside published ± max({MIN_BAND:g}, {STD_BAND:g} x that epoch's seed std); '-' = no published number.",
        f"- each gain is against the baseline in the same pair: {_baselines(plan)}; wall/run = setup, training and "
        "evaluation per run, as the suite measured it.",
    ]
    return lines


def _baselines(plan: "SuitePlan") -> str:
    manifest = plan.manifest
    own = [f"{spec.name} against {spec.baseline}" for spec in plan.methods
           if spec.baseline is not None and spec.baseline != manifest.baseline]
    return f"{manifest.baseline}" + (f" ({'; '.join(own)})" if own else "")


def _outside(rows: Sequence[dict[str, Any]], epoch: str, key: str) -> list[str]:
    return [f"{r['method']} on {r['pair']} ({r[f'delta_{key}']:+.2f}, band ±{r[f'band_{epoch}']:.2f})"
            for r in rows if r.get(f"outside_{epoch}")]


def _missing_published(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """Methods of the suite without any published number, and measured rows without one."""
    methods = [spec.name for spec in plan.methods]
    published = {m for t in plan.manifest.published.tables for values in t.top1.values() for m in values}
    never = [m for m in methods if m not in published]
    lines = []
    if never:
        lines.append(f"- no published number in the manifest for: {', '.join(never)}")
    some = [f"{r['method']} on {r['pair']}" for r in rows
            if r.get("published_top1") is None and r["method"] in published]
    if some:
        lines.append(f"- measured but not published: {', '.join(some)}")
    return lines


def _source(table: Any) -> str:
    reports = {"final": " (reports the last epoch: compare Δ final)", "best": " (reports the best epoch: compare Δ best)"}
    return table.source + reports.get(table.epoch or "", "")


def published_lines(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """Sources, the rows outside the published band (final and best epoch), and what has no published number."""
    reference = plan.manifest.published
    lines = ["Sources of the published numbers:", ""]
    lines += [f"{i + 1}. {_source(table)}" for i, table in enumerate(reference.tables)] or ["(none in the manifest)"]
    if reference.source:
        lines += ["", reference.source]
    compared = [r for r in rows if r.get("published_top1") is not None]
    lines += ["", f"{len(compared)} measured row(s) have a published number. A row is outside when its mean lies "
              f"outside published ± max({MIN_BAND:g}, {STD_BAND:g} x seed std) of that epoch (std unknown with one "
              f"seed: ± {MIN_BAND:g}).", ""]
    for epoch, key in (("final", "top1"), ("best", "best_top1")):
        outside = _outside(compared, epoch, key)
        lines.append(f"- {epoch} epoch: {len(outside)} of {len(compared)} outside"
                     + (f": {'; '.join(outside)}" if outside else ""))
    lines += _missing_published(plan, rows)
    if plan.absent:
        lines.append("- absent (no config, so not run): "
                     + ", ".join(f"{a.method} on {a.pair}" for a in plan.absent))
    return lines


def _overview_cell(row: Optional[dict[str, Any]], absent: bool) -> str:
    if row is None:
        return "absent" if absent else "-"
    mean = row.get("best_top1_mean")
    if mean is None:
        return "-"
    delta = row.get("delta_best_top1")
    if delta is None:
        return f"{mean:.2f}"
    return f"{mean:.2f} ({delta:+.2f}{' ' + OUTSIDE if row.get('outside_best') else ''})"


def overview_lines(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """The papers' layout: pairs down, methods across, best-epoch mean (Δ to published)."""
    columns = [TEACHER, *[spec.name for spec in plan.methods]]
    lines = ["| pair | " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in range(len(columns) + 1)) + "|"]
    for pair in plan.pairs:
        by_method = {r["method"]: r for r in rows if r["pair"] == pair.name}
        absent = {a.method for a in plan.absent if a.pair == pair.name}
        cells = [_overview_cell(by_method.get(m), m in absent) for m in columns]
        lines.append(f"| {pair.name} | " + " | ".join(cells) + " |")
    lines += ["", f"Best-epoch top-1 % (mean over seeds) and, in brackets, minus the published number; `{OUTSIDE}`: "
              "outside the band; absent: no config for that pair; '-': not run (or not finished)."]
    return lines


def teacher_lines(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """Each distinct teacher: its file, the pairs it serves, its measured and published top-1."""
    from kdlab.benchmarks.suite_report import _relative

    lines = []
    for teacher in plan.teachers:
        measured = next((r for r in rows if r["method"] == TEACHER and r.get("teacher_label") == teacher.label), None)
        text = f"- {teacher.label}: `{_relative(teacher.checkpoint)}`, for {', '.join(teacher.pairs)}"
        if measured is not None:
            published = measured.get("published_top1")
            text += f"; top-1 {measured['top1_mean']:.2f}% on the test split"
            if published is not None:
                text += f" (published {published:.2f}, Δ {measured['delta_top1']:+.2f})"
        else:
            text += "; not evaluated in this run"
        lines.append(text)
    return lines or ["- (no teacher: no method distils)"]


def published_numbers_lines(plan: "SuitePlan") -> list[str]:
    """The manifest's published numbers as a pairs x methods table (the dry run's document)."""
    reference = plan.manifest.published
    columns = [TEACHER, *[spec.name for spec in plan.methods]]
    lines = ["| pair | " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in range(len(columns) + 1)) + "|"]
    for pair in plan.pairs:
        cells = []
        for method in columns:
            found = reference.lookup(pair.name, method)
            cells.append("-" if found is None else f"{found[0]:.2f}")
        lines.append(f"| {pair.name} | " + " | ".join(cells) + " |")
    lines += ["", "Sources:", ""] + [f"{i + 1}. {_source(t)}" for i, t in enumerate(reference.tables)]
    return lines


# ---------------------------------------------------------------------------------------------- protocol
def _distinct_text(values: Sequence[Any]) -> str:
    return " / ".join(dict.fromkeys(str(v) for v in values)) or "-"


def _method_protocol(plan: "SuitePlan", spec: Any) -> str:
    from kdlab.benchmarks.suite_report import _relative, _schedule, _terms

    runs = [r for r in plan.runs if r.seed == 0 and r.method == spec.name]
    config = spec.template if spec.template is not None else _relative(spec.config)
    if not runs:
        return f"| {spec.name} | `{config}` | - | - | - | - | - | - | 0 |"
    cfgs = [run.load() for run in runs]
    teacher = "-" if runs[0].teacher is None else ("cache" if runs[0].cache is not None else "live")
    covered = sum(len(run.pairs) for run in runs)
    return (f"| {spec.name} | `{config}` | {_terms(cfgs[0])} | {_distinct_text([c.trainer.epochs for c in cfgs])} | "
            f"{_distinct_text([_schedule(c) for c in cfgs])} | {_distinct_text([c.data.batch_size for c in cfgs])} | "
            f"{_distinct_text([f'{c.optim.lr:g}' for c in cfgs])} | {teacher} | {covered} |")


def protocol_lines(plan: "SuitePlan") -> list[str]:
    """The protocol as the resolved configs define it: data, compute, teachers, then per method and per pair."""
    from kdlab.benchmarks.suite_report import _relative

    lines: list[str] = []
    first = next((r for r in plan.runs if r.seed == 0), None)
    if first is not None:
        cfg = first.load()
        d, t = cfg.data, cfg.trainer
        subset = f"a fixed random subset of {d.subset} training images" if d.subset else "every training image"
        lines += [
            f"- data: `{d.name}`" + (f" from `{d.root}`" if d.root else "") + f"; students train on {subset}; "
            "every evaluation uses the whole test "
            f"split; augmentation `{d.augment}` (padding {d.crop_padding}), `data.pipeline={d.pipeline}`",
            f"- compute: device {t.device}, precision {t.precision}, {plan.jobs} run(s) side by side",
        ]
    how = "each distinct one evaluated once on the test split" if plan.evaluate_pretrained else "not evaluated"
    lines.append(f"- teachers: each recipe's own `teacher.checkpoint`, not fine-tuned ({how}); "
                 f"{len(plan.teachers)} distinct teacher(s)")
    lines.append(f"- seeds: {plan.seeds} per (method, pair) (`trainer.seed` 0..{plan.seeds - 1})")
    lines += ["", "Per method (values that differ between pairs are separated by /; `pairs`: how many it runs on):", "",
              "| method | config | loss terms (first pair) | epochs | schedule | batch | lr | teacher | pairs |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [_method_protocol(plan, spec) for spec in plan.methods]
    lines += ["", "| pair | teacher | student | teacher weights | absent |", "|---|---|---|---|---|"]
    for pair in plan.pairs:
        weights = [f"`{_relative(t.checkpoint)}`" for t in plan.teachers if pair.name in t.pairs]
        absent = [a.method for a in plan.absent if a.pair == pair.name]
        lines.append(f"| {pair.name} | {pair.teacher} | {pair.student} | {', '.join(weights) or '-'} | "
                     f"{', '.join(absent) or '-'} |")
    return lines
