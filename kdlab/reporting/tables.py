"""Rows (see :mod:`kdlab.reporting.aggregate`) as Markdown, CSV and aligned plain text."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Optional, Sequence

#: secondary metrics shown in the Markdown table (prefix, header), when any row has them;
#: every metric is in the CSV / JSON output
_SHOWN_EXTRAS = (
    ("val_knn", "kNN-{k} %"),
    ("linear_top1", "linear probe %"),
    ("manifold_cka", "CKA"),
    ("manifold_knn_overlap", "kNN overlap"),
    ("mean_corruption_top1", "corruption top-1 %"),
    ("mce_", "mCE vs {k} %"),
    ("eval_set_", "{k} %"),
    ("transfer_", "transfer {k} %"),
    ("retrieval_map", "retrieval mAP %"),
    ("retrieval_recall@1", "R@1 %"),
    ("val_map50", "AP50"),
    ("val_map75", "AP75"),
    ("val_map_small", "APs"),
    ("val_map_medium", "APm"),
    ("val_map_large", "APl"),
)

def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def format_mean_std(mean: Optional[float], std: Optional[float], digits: int = 2) -> str:
    """``97.31 ± 0.42``; a single run shows the mean alone, a missing value ``-``."""
    if mean is None:
        return "-"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_gain(gain: Optional[float], se: Optional[float] = None) -> str:
    if gain is None:
        return "-"
    text = f"{gain:+.2f}"
    return f"{text} (±{se:.2f})" if se is not None else text


def _extra_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(metric name, column header) of the secondary metrics worth a table column."""
    names = sorted({key[: -len("_mean")] for row in rows for key in row if key.endswith("_mean")})
    chosen: list[tuple[str, str]] = []
    for prefix, header in _SHOWN_EXTRAS:
        for name in names:
            # a header without {k} names one metric: "retrieval_recall@1" is not "retrieval_recall@10"
            matches = name.startswith(prefix) if "{k}" in header else name == prefix
            if matches and name not in [c for c, _ in chosen]:
                chosen.append((name, header.format(k=name[len(prefix):])))
    return chosen


def _top1_header(rows: Sequence[dict[str, Any]]) -> str:
    if rows and all(row.get("metric") == "val_map" for row in rows):
        return "AP"
    return "top-1 %" if all(row.get("metric") == "val_top1" for row in rows) else "top-1 %*"


def table_cells(
    rows: Sequence[dict[str, Any]], *, best: bool = True, extras: bool = True
) -> tuple[list[str], list[list[str]]]:
    """Header and cell text of the results table (shared by Markdown and the console)."""
    has_gain = any("gain" in row for row in rows)
    header = ["method", "n", f"final {_top1_header(rows)}"]
    if best:
        header.append("best-epoch " + ("AP" if _top1_header(rows) == "AP" else "top-1 %"))
    if has_gain:
        header.append("gain")
    extra_columns = _extra_columns(rows) if extras else []
    header += [title for _, title in extra_columns]
    header.append("time/run")
    body = []
    for row in rows:
        method = row["method"] + (" *" if row.get("metric") == "linear_top1" else "")
        cells = [method, str(row.get("seeds", "")), format_mean_std(row.get("top1_mean"), row.get("top1_std"))]
        if best:
            cells.append(format_mean_std(row.get("best_top1_mean"), row.get("best_top1_std")))
        if has_gain:
            cells.append(format_gain(row.get("gain"), row.get("gain_se")))
        for name, _ in extra_columns:
            digits = 3 if name.startswith("manifold_") else 2
            cells.append(format_mean_std(row.get(f"{name}_mean"), row.get(f"{name}_std"), digits))
        cells.append(format_seconds(row.get("seconds_mean")))
        body.append(cells)
    return header, body


def footnotes(rows: Sequence[dict[str, Any]]) -> list[str]:
    notes = [
        "mean ± sample std over n seeds; final = last epoch, best-epoch = maximum over epochs "
        "(selected on the evaluation split itself, so optimistic)."
    ]
    if any(row.get("metric") == "val_map" for row in rows):
        notes.append(
            "AP = COCO AP@[.50:.95] (pycocotools) in points (x100); AP50/AP75 at IoU .50/.75, "
            "APs/APm/APl by object area (small < 32^2, medium < 96^2 pixels, large above)."
        )
    if any("gain" in row for row in rows):
        what = "AP" if any(row.get("metric") == "val_map" for row in rows) else "top-1"
        notes.append(f"gain = final {what} minus the baseline's, (± standard error of the difference).")
    if any(row.get("metric") == "linear_top1" for row in rows):
        notes.append(
            "* label-free run: top-1 is a linear probe on the frozen embedding, trained on the labels "
            "after distillation (its per-epoch val_top1 is weighted kNN, the kNN column); a probe is not "
            "the same measurement as a trained classifier's top-1."
        )
    if any(row.get("completed", row.get("seeds")) != row.get("seeds") for row in rows):
        notes.append("some runs did not complete (no final.json); their last evaluated epoch counts as final.")
    for row in rows:
        if row.get("warning"):
            notes.append(f"WARNING {row['method']}: {row['warning']}.")
    notes.append("time/run = training seconds per run (setup and post-training evaluation excluded).")
    return notes


def profile_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``method (run): summary`` of every row with a ``kdlab profile`` (profile.json), in row order."""
    return [f"{row['method']} ({row['profile_run']}): {row['profile']['summary']}"
            for row in rows if isinstance(row.get("profile"), dict) and row["profile"].get("summary")]


def to_markdown(rows: Sequence[dict[str, Any]], *, best: bool = True, extras: bool = True) -> str:
    """A GitHub-Markdown table with the footnotes that say what the numbers are, then the profiles if any."""
    header, body = table_cells(rows, best=best, extras=extras)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines.append("")
    lines += [f"- {note}" for note in footnotes(rows)]
    profiles = profile_lines(rows)
    if profiles:
        lines += ["", "Profiles (`kdlab profile`: the student beside its teacher on the CPU; details in each "
                      "run's profile.json):", ""]
        lines += [f"- {line}" for line in profiles]
    return "\n".join(lines) + "\n"


def to_text(rows: Sequence[dict[str, Any]], *, best: bool = True, extras: bool = False) -> str:
    """The table as aligned plain text for a terminal."""
    header, body = table_cells(rows, best=best, extras=extras)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    return "\n".join([render(header), "  ".join("-" * w for w in widths), *map(render, body)]) + "\n"


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Every field of every row; columns are the union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    return buffer.getvalue()
