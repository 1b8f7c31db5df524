"""PNG figures of a report: accuracy by method with error bars, and training curves.

Figures are drawn on an explicit Agg canvas (as :mod:`kdlab.eval.plots` does), so the
caller's matplotlib backend and pyplot state are never touched and no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from kdlab.reporting.aggregate import RunGroup
from kdlab.reporting.runs import number


class NothingToPlotError(ValueError):
    """The runs hold no value a figure would draw (e.g. every metrics.jsonl is empty); no file is written."""


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    """The figure as a PNG at ``path``, written atomically; only to a regular file or a new path."""
    import io

    from kdlab.checkpoint_io import atomic_write_bytes, check_output_file

    path = check_output_file(path, "plot")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return atomic_write_bytes(path, buffer.getvalue(), what="plot")


def plot_accuracy(
    rows: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    seed_values: Optional[dict[str, list[float]]] = None,
    baseline: Optional[str] = None,
    title: str = "final top-1 by method (mean ± std over seeds)",
) -> Path:
    """Mean final top-1 per method with ±std error bars and, if given, every seed as a dot.

    Points rather than bars: the axis is zoomed to the data, and bars cut at a non-zero
    origin would exaggerate differences. ``baseline`` draws that method's mean as a line.
    """
    shown = [row for row in rows if row.get("top1_mean") is not None]
    if not shown:
        raise NothingToPlotError(f"no row has a top1_mean to plot (methods: {[row.get('method') for row in rows]})")
    figure = _figure(max(5.0, 0.9 * len(shown) + 2.0), 4.0)
    axis = figure.subplots()
    x = np.arange(len(shown))
    means = np.array([row["top1_mean"] for row in shown])
    stds = np.array([row.get("top1_std") or 0.0 for row in shown])
    if seed_values:
        axis.scatter([], [], s=12, color="tab:gray", label="single seeds")
    axis.errorbar(x, means, yerr=stds, fmt="o", color="tab:blue", ecolor="tab:blue", capsize=5, markersize=7, zorder=3)
    for i, row in enumerate(shown):
        dots = (seed_values or {}).get(row["method"], [])
        if dots:
            axis.scatter(np.full(len(dots), i - 0.12), dots, s=12, color="tab:gray", alpha=0.8, zorder=2)
        axis.annotate(f"{row['top1_mean']:.1f}", (i, row["top1_mean"]), textcoords="offset points", xytext=(9, -3), fontsize=8)
    base = next((row for row in shown if row["method"] == baseline), None)
    if base is not None:
        axis.axhline(base["top1_mean"], color="tab:red", linestyle="--", linewidth=1, label=f"{baseline} (baseline)")
    if base is not None or seed_values:
        axis.legend(loc="lower right", fontsize=8)
    labels = [row["method"] + ("*" if row.get("metric") == "linear_top1" else "") for row in shown]
    axis.set_xticks(x, labels, rotation=30, ha="right")
    axis.set_ylabel("top-1 accuracy (%)")
    axis.set_title(title, fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    low = float(np.min(means - stds))
    everything = [low] + [v for values in (seed_values or {}).values() for v in values]
    axis.set_ylim(max(0.0, min(everything) - 2.0), min(100.0, float(np.max(means + stds)) + 1.5))
    return _save(figure, path)


def _curve(runs: Sequence[Any], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch mean and std of ``key`` over runs (epochs where at least one run has it)."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for row in run.metrics:
            value = number(row.get(key))
            if value is not None and isinstance(row.get("epoch"), int):
                by_epoch.setdefault(row["epoch"] + 1, []).append(value)
    epochs = np.array(sorted(by_epoch))
    means = np.array([np.mean(by_epoch[e]) for e in epochs])
    stds = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return epochs, means, stds


def plot_training_curves(
    groups: Sequence[RunGroup], path: str | Path, *, key: str = "val_top1", title: Optional[str] = None
) -> Path:
    """``key`` by epoch per group: the mean over seeds as a line, ±std as a band.

    Label-free groups are drawn dashed: their per-epoch ``val_top1`` is a kNN accuracy.
    """
    figure = _figure(7.0, 4.5)
    axis = figure.subplots()
    drawn = 0
    lowest = 100.0
    for index, group in enumerate(groups):
        epochs, means, stds = _curve(group.runs, key)
        if len(epochs) == 0:
            continue
        label_free = any(run.label_free for run in group.runs)
        label = f"{group.label} (kNN)" if label_free and key == "val_top1" else group.label
        color = f"C{index % 10}"
        axis.plot(epochs, means, marker="." if len(epochs) < 30 else None, linestyle="--" if label_free else "-",
                  color=color, label=label)
        if np.any(stds > 0):
            axis.fill_between(epochs, means - stds, means + stds, color=color, alpha=0.15)
        lowest = min(lowest, float(np.percentile(means, 25)))
        drawn += 1
    if drawn == 0:
        names = [group.label for group in groups]
        empty = [str(run.path / "metrics.jsonl") for group in groups for run in group.runs if not run.metrics]
        shown = f" ({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''} empty)" if empty else ""
        raise NothingToPlotError(f"no run in groups {names} has {key!r} in its metrics.jsonl{shown}")
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel(key)
    if key.startswith("val_top") or key.startswith("val_knn"):
        # early epochs are often near chance; zoom to where the methods differ
        axis.set_ylim(max(0.0, lowest - 5.0), 100.5)
    axis.set_title(title or f"{key} by epoch (mean ± std over seeds)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    return _save(figure, path)
