"""Group runs that differ only in their seed and summarise each group as one table row.

A row is a plain JSON-ready dict; the demo's ``results.json``, ``kdlab report`` and the
benchmark suite share this schema:

``method``            group label (e.g. ``kd``; ``teacher`` / ``student`` in the demo)
``seeds``             number of runs aggregated; ``seed_values`` their ``trainer.seed``
``metric``            what ``top1`` means in this row: ``val_top1`` (classifier top-1 on the
                      evaluation split) or ``linear_top1`` (linear probe on the frozen embedding,
                      for label-free runs that were probed)
``top1_mean/std``     top-1 (%) at the **final** epoch (``last.pt``)
``best_top1_mean/std``top-1 (%) at the **best** epoch, chosen on the evaluation split itself (as
                      many published KD numbers are); never lower than the final value
``seconds_mean/std``  training seconds per run (the trainer's epoch times)
``gain``, ``gain_se`` ``top1_mean`` minus the baseline row's, and the standard error of that
                      difference (``sqrt(s_a^2/n_a + s_b^2/n_b)``); set by :func:`add_gains`
``map_mean/std``      detection runs (``metric`` = ``val_map``): COCO AP@[.50:.95] in AP points
                      (x100 of pycocotools' fraction) at the final epoch, equal to ``top1_mean/std``;
                      ``best_map_*``, ``map50_*`` and ``val_map<50|75|_small|...>_*`` likewise
``profile``, ``profile_run`` the object ``kdlab profile`` wrote (``profile.json``) for the group's first
                      profiled run, and that run's folder; absent when no run was profiled
``<metric>_mean/std`` further metrics when present: ``val_top5``, ``val_knn<k>`` (final epoch),
                      ``linear_top1``, ``knn<k>``, ``manifold_*`` (from ``eval.json`` of last.pt), and
                      ``kdlab eval``'s robustness / transfer / retrieval results flattened
                      (:func:`inheritance_extras`: ``mean_corruption_top1``, ``mce_<ref>``,
                      ``transfer_<spec>``, ``retrieval_map``, ...)

Standard deviations are sample standard deviations (n - 1) over seeds; with a single run
they are ``None`` (JSON ``null``): one run says nothing about the spread.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Optional, Sequence

from kdlab.config import flatten_config
from kdlab.reporting.runs import CONFIG_FILE, RunRecord, number

#: config keys that do not change what a run measures; runs differing only here form one group
IGNORED_KEYS = frozenset(
    {
        "trainer.seed",
        "trainer.out_dir",
        "trainer.progress",
        "trainer.device",
        "trainer.time_limit",
        "trainer.stop_after_steps",
        "trainer.log_every",
        "trainer.keep_last",
        "trainer.num_threads",
        "trainer.finite_check",
        "trainer.compile",
        "teacher.compile",
        "teacher.fold_batchnorm",
        # where the teacher's outputs come from (each seed has its own cache), not what they are
        "distill.teacher_cache",
        "data.num_workers",
        "data.cache_dir",
        "data.eval_batch_size",
        "description",
    }
)

_SEED_PART = re.compile(r"^(?:seed|s)[-_]?\d+$", re.IGNORECASE)
_SEED_SUFFIX = re.compile(r"[-_.]seed[-_]?\d+$", re.IGNORECASE)
_EXTRA_FROM_EVAL = re.compile(r"^(linear_top\d+|knn\d+|manifold_.+)$")
_EXTRA_FROM_METRICS = re.compile(r"^val_(top5|knn\d+)$")
#: detection runs: AP keys of metrics.jsonl (fractions there, AP points x100 in report rows)
_DETECTION_EXTRAS = ("val_map50", "val_map75", "val_map_small", "val_map_medium", "val_map_large")


def is_detection(run: RunRecord) -> bool:
    return run.config.get("task") == "detection"


def _ap_points(value: Any) -> Optional[float]:
    """pycocotools' AP fraction as AP points (x100); NaN (undefined: no ground truth) stays out."""
    number_ = number(value)
    return None if number_ is None or math.isnan(number_) else 100.0 * number_


@dataclass
class RunGroup:
    """Runs of one configuration (seeds apart) under a display label."""

    label: str
    runs: list[RunRecord]




def has_config(run: RunRecord) -> bool:
    """The run folder holds the ``config.yaml`` the trainer writes (an empty config read from nowhere is not one)."""
    return bool(run.config) or (run.path / CONFIG_FILE).is_file()


def group_key(run: RunRecord) -> str:
    """The run's config without seed and operational keys, as canonical JSON.

    Paths inside the run's own folder (e.g. a per-run cache) are written relative to it, so
    two seeds that each keep an artefact in their own folder still compare equal. A run without
    ``config.yaml`` is keyed by its folder: nothing says it shares a config with any other run.
    """
    own = str(run.path.resolve())
    if not has_config(run):
        return json.dumps({"<no config.yaml>": own})
    flat = {}
    for key, value in flatten_config(run.config).items():
        if key in IGNORED_KEYS:
            continue
        if isinstance(value, str) and value.startswith(own):
            value = "<run>" + value[len(own):]
        flat[key] = value
    return json.dumps(flat, sort_keys=True, default=str)


def _strip_seed(parts: Sequence[str]) -> tuple[str, ...]:
    kept = [_SEED_SUFFIX.sub("", part) for part in parts if not _SEED_PART.match(part)]
    return tuple(part for part in kept if part)


def _fallback_label(run: RunRecord) -> str:
    model = run.config.get("model", {}).get("name", "?")
    terms = run.config.get("distill", {}).get("terms", [])
    names = "+".join(str(t.get("name", "?")) for t in terms if isinstance(t, dict)) or "?"
    return f"{model} {names}"


def _label(entries: list[tuple[Path, RunRecord]]) -> str:
    """A readable name: the runs' common folder path below the report root, seed folders removed."""
    stripped = []
    for root, run in entries:
        try:
            rel = run.path.resolve().relative_to(root.resolve()).parts
        except ValueError:
            rel = run.path.parts
        # a root that is the run itself, or holds only seed folders, names the group
        stripped.append(_strip_seed(rel) or _strip_seed((root.resolve().name,)))
    common: list[str] = []
    for parts in zip(*stripped):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    if common:
        return str(PurePosixPath(*common))
    return _fallback_label(entries[0][1])


def group_runs(entries: Iterable[tuple[Path, RunRecord]]) -> list[RunGroup]:
    """Group (root, run) pairs by :func:`group_key`; labels are unique, groups keep discovery order."""
    buckets: dict[str, list[tuple[Path, RunRecord]]] = {}
    for root, run in entries:
        buckets.setdefault(group_key(run), []).append((root, run))
    groups: list[RunGroup] = []
    used: dict[str, int] = {}
    for members in buckets.values():
        label = _label(members)
        used[label] = used.get(label, 0) + 1
        if used[label] > 1:  # same folder name, different configs: keep them apart visibly
            label = f"{label} #{used[label]}"
        groups.append(RunGroup(label, sorted((run for _, run in members), key=lambda r: (r.seed or 0, str(r.path)))))
    return groups


def mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation; (None, None) for no values, std None for one."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def run_accuracy(run: RunRecord) -> dict[str, Any]:
    """The run's headline numbers: which metric, its final and best value, and the epochs.

    Label-free runs with a linear probe in ``eval.json`` are scored by the probe (their
    per-epoch ``val_top1`` is a kNN accuracy); every other run by ``val_top1`` from
    metrics.jsonl: final = the last evaluated epoch, best = the maximum over epochs.
    """
    if is_detection(run):
        aps = [_ap_points(row.get("val_map")) for row in run.metrics]
        values = [v for v in aps if v is not None]
        if not values:
            return {"metric": "val_map", "final": None, "best": None, "epochs": len(run.metrics)}
        return {"metric": "val_map", "final": values[-1], "best": max(values), "epochs": len(run.metrics)}
    probe_last = number(run.evaluation.get("last", {}).get("linear_top1"))
    if run.label_free and probe_last is not None:
        probe_best = number(run.evaluation.get("best", {}).get("linear_top1"))
        return {
            "metric": "linear_top1",
            "final": probe_last,
            "best": max(probe_last, probe_best) if probe_best is not None else probe_last,
            "epochs": len(run.metrics),
        }
    evaluated = [row for row in run.metrics if number(row.get("val_top1")) is not None]
    if not evaluated:
        return {"metric": "val_top1", "final": None, "best": None, "epochs": len(run.metrics)}
    values = [number(row["val_top1"]) for row in evaluated]
    return {"metric": "val_top1", "final": values[-1], "best": max(values), "epochs": len(run.metrics)}  # type: ignore[type-var]


def seed_finals(groups: Sequence[RunGroup]) -> dict[str, list[float]]:
    """Every run's final top-1 per group label (the single-seed dots of the accuracy plot)."""
    out: dict[str, list[float]] = {}
    for group in groups:
        out[group.label] = [v for v in (run_accuracy(run)["final"] for run in group.runs) if v is not None]
    return out


def run_extras(run: RunRecord) -> dict[str, float]:
    """Secondary metrics of one run: final-epoch top-5 / kNN, and eval.json of last.pt."""
    extras: dict[str, float] = {}
    if is_detection(run):
        evaluated = [row for row in run.metrics if _ap_points(row.get("val_map")) is not None]
        for key in _DETECTION_EXTRAS:
            value = _ap_points(evaluated[-1].get(key)) if evaluated else None
            if value is not None:
                extras[key] = value
        return extras
    evaluated = [row for row in run.metrics if number(row.get("val_top1")) is not None]
    if evaluated:
        for key, value in evaluated[-1].items():
            if _EXTRA_FROM_METRICS.match(key) and number(value) is not None:
                extras[key] = number(value)  # type: ignore[assignment]
    for key, value in inheritance_extras(run.evaluation.get("last", {})).items():
        extras[key] = value
    for key, value in run.evaluation.get("last", {}).items():
        if _EXTRA_FROM_EVAL.match(key) and number(value) is not None:
            extras[key] = number(value)  # type: ignore[assignment]
    return extras


def _key_part(text: str) -> str:
    """A spec or folder as a metric-name part: its last path component, without spaces."""
    return PurePosixPath(str(text).rstrip("/")).name.replace(" ", "_") or str(text)


def inheritance_extras(evaluation: dict[str, Any]) -> dict[str, float]:
    """The robustness / transfer / retrieval results of ``kdlab eval`` as flat metric names.

    ``mean_corruption_top1``, ``corruption_clean_top1``, ``corruption_<name>`` (mean over its
    severities), ``retrieval_map`` / ``retrieval_recall@k``, ``transfer_<spec>``, ``eval_set_<folder>``,
    ``mce_<reference>`` / ``relative_mce_<reference>``.
    """
    out: dict[str, float] = {}
    for key in ("mean_corruption_top1", "corruption_clean_top1"):
        if number(evaluation.get(key)) is not None:
            out[key] = number(evaluation[key])  # type: ignore[assignment]
    corruptions = evaluation.get("corruptions")
    if isinstance(corruptions, dict):
        for name, by_severity in corruptions.items():
            values = [number(v) for v in by_severity.values()] if isinstance(by_severity, dict) else []
            if values and all(v is not None for v in values):
                out[f"corruption_{name}"] = sum(values) / len(values)  # type: ignore[arg-type]
    for field_name, prefix in (("retrieval", "retrieval_"), ("transfer", "transfer_"), ("eval_sets", "eval_set_"),
                               ("mce", "mce_"), ("relative_mce", "relative_mce_")):
        values = evaluation.get(field_name)
        if isinstance(values, dict):
            for sub, value in values.items():
                if number(value) is not None:
                    part = sub if field_name == "retrieval" else _key_part(sub)
                    out[f"{prefix}{part}"] = number(value)  # type: ignore[assignment]
    return out


def describe_terms(config: dict[str, Any]) -> str:
    """A config's loss terms as the tables show them: ``0.1*ce + 0.9*kd``."""
    parts = []
    for term in config.get("distill", {}).get("terms", []):
        if isinstance(term, dict):
            weight = term.get("weight", 1.0)
            parts.append(f"{weight:g}*{term.get('name', '?')}" if isinstance(weight, (int, float)) else str(term))
    return " + ".join(parts)


def summarize(group: RunGroup) -> dict[str, Any]:
    """One table row (see the module docstring) from a group of runs of one config."""
    if not group.runs:
        raise ValueError(f"group {group.label!r} has no runs to summarise")
    accuracies = [run_accuracy(run) for run in group.runs]
    metrics = {acc["metric"] for acc in accuracies}
    if len(metrics) > 1:
        paths = ", ".join(str(run.path) for run in group.runs)
        raise ValueError(f"group {group.label!r} mixes metrics {sorted(metrics)} across its runs ({paths})")
    first = group.runs[0].config
    row: dict[str, Any] = {
        "method": group.label,
        "seeds": len(group.runs),
        "seed_values": [run.seed for run in group.runs],
        "metric": metrics.pop(),
    }
    for name, key in (("top1", "final"), ("best_top1", "best")):
        values = [acc[key] for acc in accuracies if acc[key] is not None]
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
    row["seconds_mean"], row["seconds_std"] = mean_std([run.train_seconds for run in group.runs])
    row["epochs"] = max(acc["epochs"] for acc in accuracies)
    row["completed"] = sum(run.completed for run in group.runs)
    row["model"] = first.get("model", {}).get("name")
    row["teacher"] = first.get("teacher", {}).get("checkpoint") or first.get("teacher", {}).get("name")
    row["terms"] = describe_terms(first)
    row["label_free"] = group.runs[0].label_free
    row["description"] = first.get("description", "")
    row["runs"] = [str(run.path) for run in group.runs]
    per_run = [run_extras(run) for run in group.runs]
    for key in sorted({k for extras in per_run for k in extras}):
        row[f"{key}_mean"], row[f"{key}_std"] = mean_std([extras[key] for extras in per_run if key in extras])
    profiled = [run for run in group.runs if run.profile]
    if profiled:  # kdlab profile's object of the group's first profiled run (profile.json)
        row["profile"], row["profile_run"] = profiled[0].profile, str(profiled[0].path)
    if row["metric"] == "val_map":  # the detection names of the headline and AP50 columns
        row["map_mean"], row["map_std"] = row["top1_mean"], row["top1_std"]
        row["best_map_mean"], row["best_map_std"] = row["best_top1_mean"], row["best_top1_std"]
        row["map50_mean"], row["map50_std"] = row.get("val_map50_mean"), row.get("val_map50_std")
    return row


def add_gains(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Set ``gain`` / ``gain_se`` of every row relative to the row whose method is ``baseline``.

    The gain is shown as measured, negative or not. ``gain_se`` is None unless both rows have
    a standard deviation (at least two seeds each).
    """
    base = next((row for row in rows if row["method"] == baseline), None)
    if base is None:
        methods = ", ".join(row["method"] for row in rows)
        raise ValueError(f"baseline {baseline!r} is not one of the rows ({methods})")
    for row in rows:
        if row["top1_mean"] is None or base["top1_mean"] is None:
            row["gain"], row["gain_se"] = None, None
            continue
        row["gain"] = row["top1_mean"] - base["top1_mean"]
        if row is base:
            row["gain_se"] = None
        elif row["top1_std"] is not None and base["top1_std"] is not None:
            row["gain_se"] = math.sqrt(row["top1_std"] ** 2 / row["seeds"] + base["top1_std"] ** 2 / base["seeds"])
        else:
            row["gain_se"] = None
    return rows
