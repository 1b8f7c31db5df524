"""The ``published:`` block of ``suite.yaml`` and the comparison of measured rows with it.

Two kinds of published numbers, which may coexist:

- ``top1`` / ``order`` (any suite): a *reference ordering*, possibly from another dataset or
  protocol (the CIFAR-10 CPU suite compares its ordering with the CIFAR-100 tables). The report
  checks the ``order`` relations and the rank correlation with ``top1``; it never subtracts them.
- ``tables`` (suites with ``pairs:``): the number published for the *same* protocol, per
  (method, pair), each table with its source::

      published:
        tables:
          - source: "RepDistiller README (CRD paper, Tian et al., ICLR 2020, Tables 1-2)"
            epoch: final          # optional: which epoch the source reports (final or best)
            top1:
              resnet56_resnet20: {teacher: 72.34, student: 69.06, kd: 70.66}
          - source: "mdistiller README (DKD, Zhao et al., CVPR 2022)"
            top1:
              resnet56_resnet20: {dkd: 71.97}

  Every number belongs to exactly one table (so each has one source); ``teacher`` is the
  teacher's own accuracy. The report shows ``published`` and ``delta`` (measured mean minus
  published) for the final and the best epoch and marks a row outside published
  ± max(:data:`MIN_BAND`, :data:`STD_BAND` x seed std).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from kdlab.benchmarks.suite_values import SuiteError, mapping, number, where

#: the band around a published number is never narrower than this (points)
MIN_BAND = 0.5
#: ... and otherwise this many seed standard deviations
STD_BAND = 2.0


@dataclass(frozen=True)
class PublishedTable:
    """Published top-1 per pair and method, from one source."""

    source: str
    top1: dict[str, dict[str, float]] = field(default_factory=dict)  # pair -> method -> top-1 %
    epoch: Optional[str] = None  # which epoch the source reports: final, best, or None (not known)


@dataclass(frozen=True)
class PublishedReference:
    """Published numbers the measurement is compared with (see the module docstring)."""

    source: str = ""
    top1: dict[str, float] = field(default_factory=dict)
    order: tuple[tuple[str, str], ...] = ()
    tables: tuple[PublishedTable, ...] = ()

    def lookup(self, pair: str, method: str) -> Optional[tuple[float, str]]:
        """(top-1, source) published for ``method`` on ``pair``, or None."""
        for table in self.tables:
            value = table.top1.get(pair, {}).get(method)
            if value is not None:
                return value, table.source
        return None


def _table(raw: Any, path: Path, index: int) -> PublishedTable:
    key = f"published.tables[{index}]"
    entry = mapping(raw, path, key)
    unknown = sorted(set(entry) - {"source", "top1", "epoch"})
    if unknown:
        raise SuiteError(f"{where(path, key)}: unknown key(s) {unknown}; allowed: ['epoch', 'source', 'top1']")
    epoch = entry.get("epoch")
    if epoch not in (None, "final", "best"):
        raise SuiteError(f"{where(path, key + '.epoch')} must be final or best (the epoch the source reports), got {epoch!r}")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise SuiteError(f"{where(path, key + '.source')} must say where the numbers come from, got {source!r}")
    top1: dict[str, dict[str, float]] = {}
    for pair, methods in mapping(entry.get("top1"), path, f"{key}.top1").items():
        values = mapping(methods, path, f"{key}.top1.{pair}")
        top1[str(pair)] = {str(m): number(v, path, f"{key}.top1.{pair}.{m}") for m, v in values.items()}
    return PublishedTable(" ".join(source.split()), top1, epoch)


def _check_tables(tables: tuple[PublishedTable, ...], path: Path, pairs: tuple[str, ...], methods: tuple[str, ...]) -> None:
    """Pairs and methods the manifest knows; each (pair, method) in one table only."""
    if tables and not pairs:
        raise SuiteError(f"{where(path, 'published.tables')} needs the suite's pairs: (numbers are per method and pair); "
                         "a suite without pairs compares its ordering through published.top1 / published.order")
    seen: dict[tuple[str, str], int] = {}
    for index, table in enumerate(tables):
        for pair, values in table.top1.items():
            if pair not in pairs:
                raise SuiteError(f"{where(path, f'published.tables[{index}].top1.{pair}')}: not one of the pairs "
                                 f"{list(pairs)}")
            for method in values:
                if method not in methods and method != "teacher":
                    raise SuiteError(f"{where(path, f'published.tables[{index}].top1.{pair}.{method}')}: not one of the "
                                     f"methods {list(methods)} (or teacher)")
                if (pair, method) in seen:
                    raise SuiteError(f"{where(path, f'published.tables[{index}].top1.{pair}.{method}')}: already given "
                                     f"in published.tables[{seen[(pair, method)]}]; each number needs one source")
                seen[(pair, method)] = index


def parse_published(raw: Any, path: Path, pairs: tuple[str, ...] = (), methods: tuple[str, ...] = ()) -> PublishedReference:
    """The ``published:`` block, validated against the manifest's pairs and methods."""
    entry = mapping(raw, path, "published")
    unknown = sorted(set(entry) - {"source", "top1", "order", "tables"})
    if unknown:
        raise SuiteError(f"{where(path, 'published')}: unknown key(s) {unknown}; allowed: order, source, tables, top1")
    top1 = mapping(entry.get("top1"), path, "published.top1")
    for method, value in top1.items():
        number(value, path, f"published.top1.{method}")
    order = entry.get("order", [])
    if not isinstance(order, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(m, str) for m in pair) for pair in order
    ):
        raise SuiteError(f"{where(path, 'published.order')} must be a list of [lower, higher] method pairs, got {order!r}")
    raw_tables = entry.get("tables", [])
    if not isinstance(raw_tables, list):
        raise SuiteError(f"{where(path, 'published.tables')} must be a list of {{source, top1}} entries, got {raw_tables!r}")
    tables = tuple(_table(t, path, i) for i, t in enumerate(raw_tables))
    _check_tables(tables, path, pairs, methods)
    source = entry.get("source", "")
    return PublishedReference(
        source=str(source).strip(),
        top1={str(k): float(v) for k, v in top1.items()},
        order=tuple((a, b) for a, b in order),
        tables=tables,
    )


# ---------------------------------------------------------------------------------------------- comparison
def band(std: Optional[float]) -> float:
    """Half-width of the agreement band: max(MIN_BAND, STD_BAND x std); MIN_BAND when the std is unknown."""
    return max(MIN_BAND, STD_BAND * std) if std is not None else MIN_BAND


def compare(row: dict[str, Any], published: Optional[tuple[float, str]]) -> dict[str, Any]:
    """The published-number fields of a result row (all None without a published number).

    ``delta_top1`` / ``delta_best_top1``: measured mean minus published, final / best epoch;
    ``outside_final`` / ``outside_best``: the mean lies outside published ± band(std) of that epoch.
    """
    fields: dict[str, Any] = {"published_top1": None, "published_source": None}
    for epoch, key in (("final", "top1"), ("best", "best_top1")):
        fields[f"delta_{key}"] = fields[f"band_{epoch}"] = fields[f"outside_{epoch}"] = None
    if published is None:
        return fields
    value, source = published
    fields["published_top1"], fields["published_source"] = value, source
    for epoch, key in (("final", "top1"), ("best", "best_top1")):
        mean = row.get(f"{key}_mean")
        if mean is None:
            continue
        delta, width = mean - value, band(row.get(f"{key}_std"))
        fields[f"delta_{key}"], fields[f"band_{epoch}"] = delta, width
        fields[f"outside_{epoch}"] = abs(delta) > width
    return fields
