"""The suite's ``inherit:`` block: what the trained networks inherit beyond top-1 (issue 20).

::

    inherit:
      methods: [teacher, student, kd, coss]   # which rows (teacher = the fine-tuned teacher)
      corruptions: all                        # or a list of names
      severities: [1, 2, 3, 4, 5]
      corruption_samples: 2000                # a fixed part of the test split (the same for every run); null: all
      corruption_seed: 0
      transfer: [digits]                      # data specs (kdlab.engine.transfer_eval)
      retrieval: true
      manifold: true                          # teacher-student CKA / kNN overlap (runs with a teacher)
      references: [teacher, student]          # mCE of every row against these rows

After a run of one of ``methods`` trained (or was reused), its ``checkpoints/last.pt`` is
evaluated as ``kdlab eval`` does with the matching flags and the results are merged into the
``"last"`` entry of the run's ``eval.json`` beside ``inherit_settings``; a later invocation with
the same settings reuses them. The report adds a table of mean ± std over seeds, and mCE of
each run against the mean corruption accuracies of each reference row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from kdlab.benchmarks.suite_values import SuiteError, flag, mapping, names, where

_KEYS = {"methods", "corruptions", "severities", "corruption_samples", "corruption_seed", "transfer", "retrieval",
         "manifold", "references"}
SETTINGS_KEY = "inherit_settings"


@dataclass(frozen=True)
class InheritSpec:
    """A parsed ``inherit:`` block."""

    methods: tuple[str, ...]
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    corruption_samples: Optional[int] = None
    corruption_seed: int = 0
    transfer: tuple[str, ...] = ()
    retrieval: bool = False
    manifold: bool = False
    references: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What decides the measured values (a run evaluated with other settings is evaluated again)."""
        return {"corruptions": list(self.corruptions), "severities": list(self.severities),
                "corruption_samples": self.corruption_samples, "corruption_seed": self.corruption_seed,
                "transfer": list(self.transfer), "retrieval": self.retrieval, "manifold": self.manifold}


def parse_inherit(raw: Any, path: Path, methods: Sequence[str]) -> Optional[InheritSpec]:
    """The manifest's ``inherit:`` block checked (None when absent); errors name the key."""
    if raw is None:
        return None
    from kdlab.eval.corruptions import CORRUPTIONS

    entry = mapping(raw, path, "inherit")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise SuiteError(f"{where(path, 'inherit')}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    rows = ("teacher", *methods)
    chosen = names(entry.get("methods"), path, "inherit.methods")
    for key, listed in (("methods", chosen), ("references", names(entry.get("references", []) or ["teacher"], path,
                                                                     "inherit.references"))):
        outside = [m for m in listed if m not in rows]
        if outside:
            raise SuiteError(f"{where(path, f'inherit.{key}')} names {outside}, not rows of the suite {list(rows)}")
    corruptions = entry.get("corruptions", [])
    if corruptions == "all":
        corruptions = list(CORRUPTIONS)
    corruptions = names(corruptions, path, "inherit.corruptions", "corruption names") if corruptions else ()
    bad = [c for c in corruptions if c not in CORRUPTIONS]
    if bad:
        raise SuiteError(f"{where(path, 'inherit.corruptions')}: unknown {bad} (known: {', '.join(CORRUPTIONS)})")
    severities = entry.get("severities", [1, 2, 3, 4, 5])
    if not isinstance(severities, list) or not severities or any(s not in (1, 2, 3, 4, 5) for s in severities):
        raise SuiteError(f"{where(path, 'inherit.severities')} must be a list of severities 1..5, got {severities!r}")
    samples = entry.get("corruption_samples")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise SuiteError(f"{where(path, 'inherit.corruption_samples')} must be an integer >= 1 or null, got {samples!r}")
    seed = entry.get("corruption_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SuiteError(f"{where(path, 'inherit.corruption_seed')} must be an integer >= 0, got {seed!r}")
    transfer = entry.get("transfer", [])
    transfer = names(transfer, path, "inherit.transfer", "data specs") if transfer else ()
    spec = InheritSpec(
        methods=chosen, corruptions=tuple(corruptions), severities=tuple(severities), corruption_samples=samples,
        corruption_seed=seed, transfer=tuple(transfer), retrieval=flag(entry.get("retrieval", False), path,
                                                                        "inherit.retrieval"),
        manifold=flag(entry.get("manifold", False), path, "inherit.manifold"),
        references=tuple(entry.get("references") or ()),
    )
    if not (spec.corruptions or spec.transfer or spec.retrieval or spec.manifold):
        raise SuiteError(f"{where(path, 'inherit')} asks for nothing (corruptions, transfer, retrieval or manifold)")
    return spec


def _eval_file(run_dir: Path) -> Path:
    from kdlab.reporting import EVAL_FILE

    return run_dir / EVAL_FILE


def _saved(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_eval_file(run_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_current(run_dir: Path, settings: dict[str, Any]) -> bool:
    """Whether the run's eval.json holds this block's results for these settings."""
    last = _saved(run_dir).get("last")
    return isinstance(last, dict) and last.get(SETTINGS_KEY) == settings


def evaluate_inheritance(cfg: Any, run_dir: Path, settings: dict[str, Any]) -> float:
    """Evaluate ``run_dir/checkpoints/last.pt`` as ``settings`` say; merge into eval.json. Returns seconds."""
    import dataclasses

    from kdlab.engine.inheritance_eval import InheritanceRequest
    from kdlab.engine.report_eval import evaluate_checkpoint
    from kdlab.engine.robustness_eval import CorruptionRequest

    started = time.monotonic()
    corruptions = None
    if settings["corruptions"]:
        corruptions = CorruptionRequest(
            names=tuple(settings["corruptions"]), severities=tuple(settings["severities"]),
            samples=settings["corruption_samples"], seed=settings["corruption_seed"],
        )
    request = InheritanceRequest(corruptions=corruptions, transfer=tuple(settings["transfer"]),
                                 retrieval=bool(settings["retrieval"]))
    manifold = bool(settings["manifold"]) and bool(cfg.teacher.name or cfg.teacher.checkpoint)
    # the run's progress display is not wanted here: the suite prints one line per task
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, progress="none"))
    result = evaluate_checkpoint(cfg, str(run_dir / "checkpoints" / "last.pt"), manifold=manifold, inherit=request)
    saved = _saved(run_dir)
    last = saved.get("last") if isinstance(saved.get("last"), dict) else {}
    saved["last"] = {**last, **result, SETTINGS_KEY: settings}
    from kdlab.checkpoint_io import atomic_write_text

    atomic_write_text(_eval_file(run_dir), json.dumps(saved, indent=2, default=str) + "\n", what="the evaluation")
    return round(time.monotonic() - started, 2)


# ---------------------------------------------------------------------------------------------- the report
def _run_cells(run_dir: Path) -> Optional[dict[str, dict[str, float]]]:
    last = _saved(Path(run_dir)).get("last")
    cells = last.get("corruptions") if isinstance(last, dict) else None
    return cells if isinstance(cells, dict) and cells else None


def _run_clean(run_dir: Path) -> Optional[float]:
    last = _saved(Path(run_dir)).get("last")
    value = last.get("corruption_clean_top1") if isinstance(last, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _mean_cells(all_cells: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    names_ = set.intersection(*(set(cells) for cells in all_cells))
    out: dict[str, dict[str, float]] = {}
    for name in sorted(names_):
        severities = set.intersection(*(set(cells[name]) for cells in all_cells))
        out[name] = {s: sum(float(cells[name][s]) for cells in all_cells) / len(all_cells) for s in sorted(severities)}
    return out


def add_corruption_ratios(rows: list[dict[str, Any]], references: Sequence[str]) -> None:
    """``mce_<ref>_mean/std`` and ``relative_mce_<ref>_mean/std`` of every row with corruption results.

    Each run's cells (its eval.json) against the mean cells of the reference row's runs, then
    mean ± std over the row's runs. Rows without readable runs (carried from an earlier report)
    keep what they hold.
    """
    from kdlab.eval.corruption_scores import corruption_error_ratio
    from kdlab.reporting import mean_std

    by_method = {row["method"]: row for row in rows}
    for reference in references:
        ref_row = by_method.get(reference)
        ref_runs = [(c, _run_clean(Path(r))) for r in (ref_row or {}).get("runs", []) if (c := _run_cells(Path(r)))]
        if not ref_runs:
            continue
        ref_cells = _mean_cells([c for c, _ in ref_runs])
        cleans = [clean for _, clean in ref_runs if clean is not None]
        ref_clean = sum(cleans) / len(cleans) if len(cleans) == len(ref_runs) else None
        for row in rows:
            ratios, relative = [], []
            for run in row.get("runs", []):
                cells = _run_cells(Path(run))
                if cells is None:
                    continue
                typed = {n: {int(s): v for s, v in by.items()} for n, by in cells.items()}
                try:
                    ratio = corruption_error_ratio(typed, {n: {int(s): v for s, v in by.items()} for n, by in
                                                           ref_cells.items()},
                                                   clean=_run_clean(Path(run)), reference_clean=ref_clean)
                except ValueError:  # a reference without errors on these images: no ratio
                    continue
                ratios.append(ratio["mce"])
                if ratio["relative_mce"] is not None:
                    relative.append(ratio["relative_mce"])
            if ratios:
                row[f"mce_{reference}_mean"], row[f"mce_{reference}_std"] = mean_std(ratios)
            if relative:
                row[f"relative_mce_{reference}_mean"], row[f"relative_mce_{reference}_std"] = mean_std(relative)


def report_lines(spec: InheritSpec, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The Markdown of the inheritance table (mean ± std over seeds) and its correlations."""
    from kdlab.benchmarks.suite_compare import spearman
    from kdlab.reporting.tables import format_mean_std

    chosen = [row for row in rows if row["method"] in spec.methods and row.get("mean_corruption_top1_mean") is not None
              or row["method"] in spec.methods and row.get("retrieval_map_mean") is not None]
    if not chosen:
        return ["- no inheritance results yet (rerun the suite command)"]
    transfer_keys = sorted({key[:-len("_mean")] for row in chosen for key in row
                            if key.startswith("transfer_") and key.endswith("_mean")})
    columns: list[tuple[str, str, int]] = [("top1", "top-1 %", 2)]
    if spec.corruptions:
        columns += [("corruption_clean_top1", "clean top-1 (same images) %", 2),
                    ("mean_corruption_top1", "corruption top-1 %", 2)]
        columns += [(f"mce_{ref}", f"mCE vs {ref} %", 1) for ref in spec.references]
        columns += [(f"relative_mce_{ref}", f"rel. mCE vs {ref} %", 1) for ref in spec.references]
    columns += [(key, f"transfer {key[len('transfer_'):]} %", 2) for key in transfer_keys]
    if spec.retrieval:
        columns += [("retrieval_map", "retrieval mAP %", 2), ("retrieval_recall@1", "R@1 %", 2)]
    if spec.manifold:
        columns += [("manifold_cka", "CKA", 3), ("manifold_knn_overlap", "kNN overlap", 3)]
    header = ["method", "seeds", *[title for _, title, _ in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in chosen:
        cells = [row["method"], str(row.get("seeds", ""))]
        cells += [format_mean_std(row.get(f"{key}_mean"), row.get(f"{key}_std"), digits) for key, _, digits in columns]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    samples = f"a fixed {spec.corruption_samples} of the test images" if spec.corruption_samples else "the test split"
    if spec.corruptions:
        lines.append(f"- corruptions: {len(spec.corruptions)} of Hendrycks & Dietterich's, severities "
                     f"{', '.join(map(str, spec.severities))}, synthesised by kdlab on {samples} (corruption seed "
                     f"{spec.corruption_seed}: the same corrupted images for every run); mCE = mean over corruptions "
                     "of the run's summed top-1 error over the reference row's (100: as robust as the reference, "
                     "lower: more robust); relative mCE counts only the error added by the corruption.")
    if transfer_keys:
        lines.append("- transfer: frozen embedding, multinomial logistic regression (L-BFGS), L2 chosen on a "
                     "stratified 30% of the spec's training split, refit on all of it, top-1 on its test split.")
    if spec.retrieval:
        lines.append("- retrieval: every test image queries the others by cosine similarity of the embedding; "
                     "same class = relevant.")
    distilled = [row for row in chosen if row["method"] not in ("teacher", *spec.references)]
    for key, title in (("manifold_knn_overlap", "kNN overlap"), ("manifold_cka", "CKA")):
        for ref in spec.references[:1]:
            pairs = [(row[f"{key}_mean"], row[f"mce_{ref}_mean"]) for row in distilled
                     if row.get(f"{key}_mean") is not None and row.get(f"mce_{ref}_mean") is not None]
            rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
            if rho is not None:
                lines.append(f"- Spearman rank correlation over the {len(pairs)} distilled rows between {title} with "
                             f"the teacher and mCE vs {ref}: {rho:+.2f} (negative: closer to the teacher's manifold, "
                             "more of its robustness kept).")
    return lines
