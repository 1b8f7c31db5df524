"""What the suite's report compares: gains over each method's baseline, the published ordering, seed noise.

Shared by suites with and without pairs (:mod:`kdlab.benchmarks.suite_report`,
:mod:`kdlab.benchmarks.suite_report_pairs`).
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from kdlab.benchmarks.suite_manifest import TEACHER

if TYPE_CHECKING:
    from kdlab.benchmarks.suite_plan import SuitePlan

#: a measured difference counts as resolved when it exceeds this many standard errors
RESOLVED_SE = 2.0


# ---------------------------------------------------------------------------------------------- gains
def gain_over(row: dict[str, Any], base: dict[str, Any]) -> None:
    """Set ``row``'s ``gain`` / ``gain_se`` against the row ``base`` (as :func:`kdlab.reporting.add_gains`)."""
    from kdlab.reporting import add_gains

    add_gains([row] if row is base else [dict(base), row], base["method"])


def apply_gains(rows: Sequence[dict[str, Any]], baseline_of: Callable[[str], str]) -> None:
    """Gains of every student row over its own baseline row (``baseline_of(method)``), when that row is there.

    Rows whose baseline did not run get no ``gain``; when any row has one, the teacher's is None.
    """
    by_method = {row["method"]: row for row in rows}
    gained = False
    for row in rows:
        if row["method"] == TEACHER:
            continue
        row["baseline"] = baseline_of(row["method"])
        base = by_method.get(row["baseline"])
        if base is not None:
            gain_over(row, base)
            gained = True
    for row in rows:
        if gained and row["method"] == TEACHER:
            row["gain"], row["gain_se"] = None, None  # the teacher is not a student method


# ---------------------------------------------------------------------------------------------- comparisons
def _difference(low: dict[str, Any], high: dict[str, Any]) -> tuple[Optional[float], Optional[float]]:
    """``high - low`` in top-1 and its standard error (None without two seeds on both sides)."""
    if low.get("top1_mean") is None or high.get("top1_mean") is None:
        return None, None
    diff = high["top1_mean"] - low["top1_mean"]
    if low.get("top1_std") is None or high.get("top1_std") is None:
        return diff, None
    se = math.sqrt(low["top1_std"] ** 2 / low["seeds"] + high["top1_std"] ** 2 / high["seeds"])
    return diff, se


def verdict(diff: Optional[float], se: Optional[float]) -> str:
    """How a measured ``higher - lower`` difference reads against its noise."""
    if diff is None:
        return "not measured"
    if se is None:
        return "agrees (one seed: noise unknown)" if diff > 0 else "reversed (one seed: noise unknown)"
    if diff > RESOLVED_SE * se:
        return "agrees"
    if diff < -RESOLVED_SE * se:
        return "reversed"
    return "within seed noise"


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Spearman's rank correlation of two equally long sequences (None below 3 pairs or without spread)."""
    if len(a) != len(b):
        raise ValueError(f"spearman: sequences of different lengths {len(a)} and {len(b)}")
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if len(set(ra)) < 2 or len(set(rb)) < 2:
        return None
    return statistics.correlation(ra, rb)


def ordering_lines(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown: each published pair against the measurement, and the rank correlation."""
    from kdlab.reporting.tables import format_gain

    by_method = {row["method"]: row for row in rows}
    reference = plan.manifest.published
    lines: list[str] = []
    if reference.source:
        lines += [f"Published reference: {reference.source}", ""]
    if reference.order:
        lines += ["| published | measured difference (higher - lower) | verdict |", "|---|---|---|"]
        for low, high in reference.order:
            if low not in by_method or high not in by_method:
                lines.append(f"| {low} < {high} | - | not measured |")
                continue
            diff, se = _difference(by_method[low], by_method[high])
            lines.append(f"| {low} < {high} | {format_gain(diff, se)} | {verdict(diff, se)} |")
        lines += ["", f"A pair *agrees* when the measured difference exceeds {RESOLVED_SE:g} standard errors, "
                  "is *reversed* below minus that, and is *within seed noise* otherwise.", ""]
    common = [m for m in reference.top1 if m in by_method and by_method[m].get("top1_mean") is not None]
    rho = spearman([reference.top1[m] for m in common], [by_method[m]["top1_mean"] for m in common])
    if rho is not None:
        measured = sorted(common, key=lambda m: by_method[m]["top1_mean"])
        published = sorted(common, key=lambda m: reference.top1[m])
        lines += [
            f"Rank correlation (Spearman) between the published and the measured top-1 over {len(common)} methods "
            f"with a published number: {rho:+.2f}.",
            "",
            f"- published, low to high: {' < '.join(published)}",
            f"- measured, low to high: {' < '.join(measured)}",
            "",
        ]
    return lines


def separation_lines(plan: "SuitePlan", rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown bullets: each method's gain over the baseline against seed noise."""
    from kdlab.reporting.tables import format_gain

    lines = []
    for row in rows:
        baseline = row.get("baseline", plan.manifest.baseline)
        if row["method"] in (TEACHER, baseline) or row.get("gain") is None:
            continue
        gain, se = row["gain"], row.get("gain_se")
        if se is None:
            judged = "one seed on a side: the noise is unknown"
        elif abs(gain) > RESOLVED_SE * se:
            judged = f"{'above' if gain > 0 else 'below'} the {baseline} beyond seed noise"
        else:
            judged = "within seed noise"
        lines.append(f"- {row['method']}: {format_gain(gain, se)} points, {judged}")
    return lines


def target_lines(rows: Sequence[dict[str, Any]], baseline: str) -> list[str]:
    """Whether the best method beats the baseline by more than twice the larger of their seed stds."""
    base = next((r for r in rows if r["method"] == baseline), None)
    others = [r for r in rows if r["method"] not in (TEACHER, baseline) and r.get("top1_mean") is not None]
    if base is None or base.get("top1_mean") is None or not others:
        return []
    best = max(others, key=lambda r: r["top1_mean"])
    stds = [s for s in (best.get("top1_std"), base.get("top1_std")) if s is not None]
    if len(stds) < 2:
        return [f"- best method: {best['method']} ({best['top1_mean'] - base['top1_mean']:+.2f} over {baseline}); "
                "one seed on a side, so the target (a gain above twice the larger seed std) cannot be judged"]
    gain, bound = best["top1_mean"] - base["top1_mean"], 2 * max(stds)
    met = "met" if gain > bound else "NOT met"
    return [f"- target, the best method beats {baseline} by more than twice the larger seed std: {met} — "
            f"{best['method']} {gain:+.2f} against 2 x {max(stds):.2f} = {bound:.2f}"]
