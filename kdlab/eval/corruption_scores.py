"""Summaries of corruption accuracies: mean corruption accuracy and Hendrycks & Dietterich's mCE.

``cells`` maps a corruption name to ``{severity: top-1 %}``. With ``E`` the top-1 error (100 - top-1)
of the model and ``R`` that of a reference model on the same corrupted images, per corruption c
(Hendrycks & Dietterich, ICLR 2019, Sec. 3)::

    CE_c          = sum_s E_{s,c} / sum_s R_{s,c}
    relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (R_{s,c} - R_clean)

and mCE / relative mCE are their means over the corruptions, in percent (100: as robust as the
reference; below 100: more robust). The paper's reference is AlexNet; kdlab's is any model
(for a distilled student: its teacher, or the student trained without distillation).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

Cells = Mapping[str, Mapping[int, float]]


def _check_cells(name: str, cells: Cells) -> None:
    if not cells or any(not by_severity for by_severity in cells.values()):
        raise ValueError(f"{name} must map each corruption to at least one severity's top-1, got {dict(cells)!r}")


def mean_corruption_accuracy(cells: Cells) -> float:
    """Mean top-1 (%) over every (corruption, severity) cell."""
    _check_cells("cells", cells)
    values = [float(v) for by_severity in cells.values() for v in by_severity.values()]
    return sum(values) / len(values)


def corruption_error_ratio(
    cells: Cells,
    reference: Cells,
    *,
    clean: Optional[float] = None,
    reference_clean: Optional[float] = None,
) -> dict[str, object]:
    """mCE (and, given both clean accuracies, relative mCE) of ``cells`` against ``reference``, in percent.

    Only the (corruption, severity) cells both hold are compared; a corruption whose reference
    error sum is zero (or, for the relative form, whose reference loses nothing) has no ratio and
    is left out of that mean. Returns ``{"mce", "relative_mce", "per_corruption": {c: CE_c %},
    "compared": [c, ...]}``; ``relative_mce`` is None without both clean accuracies.
    """
    _check_cells("cells", cells)
    _check_cells("reference", reference)
    per_corruption: dict[str, float] = {}
    relative: dict[str, float] = {}
    for name, by_severity in cells.items():
        if name not in reference:
            continue
        severities = [s for s in by_severity if s in reference[name]]
        if not severities:
            continue
        errors = sum(100.0 - float(by_severity[s]) for s in severities)
        reference_errors = sum(100.0 - float(reference[name][s]) for s in severities)
        if reference_errors > 0:
            per_corruption[name] = 100.0 * errors / reference_errors
        if clean is not None and reference_clean is not None:
            gained = errors - len(severities) * (100.0 - clean)
            reference_gained = reference_errors - len(severities) * (100.0 - reference_clean)
            if reference_gained > 0:
                relative[name] = 100.0 * gained / reference_gained
    if not per_corruption:
        raise ValueError("cells and reference share no (corruption, severity) with a reference error above zero")
    mce = sum(per_corruption.values()) / len(per_corruption)
    relative_mce = sum(relative.values()) / len(relative) if relative else None
    if relative_mce is not None and not math.isfinite(relative_mce):
        relative_mce = None
    return {"mce": mce, "relative_mce": relative_mce, "per_corruption": per_corruption,
            "compared": sorted(per_corruption)}
