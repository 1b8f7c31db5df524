"""Reading kdlab run folders: the config, the per-epoch metrics and the summaries a run leaves.

A run folder is any folder holding ``metrics.jsonl`` (written by the trainer). Next to it the
trainer writes ``config.yaml`` and, once training completed, ``final.json``. Evaluation after
training (kNN, linear probe, teacher-student manifold metrics) is stored in ``eval.json``:

``{"last": {<metric>: value, ...}, "best": {...}}``
    the results of :func:`kdlab.engine.report_eval.evaluate_checkpoint` on
    ``checkpoints/last.pt`` and ``checkpoints/best.pt``. A flat mapping (e.g. the output of
    ``kdlab eval ... --json``) is read as ``{"last": mapping}``.

``kdlab profile RUN_DIR`` writes ``profile.json`` (the student beside its teacher: parameters,
MACs, size, CPU latency, top-1 and a one-line ``summary``; schema in :mod:`kdlab.deploy.profile`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from kdlab.config.yaml_reading import describe_yaml_error

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
FINAL_FILE = "final.json"
EVAL_FILE = "eval.json"
#: ``kdlab profile RUN_DIR``: the student beside its teacher (parameters, MACs, size, latency, top-1)
PROFILE_FILE = "profile.json"


class RunFolderError(ValueError):
    """A run folder (or a file in it) cannot be read; the message names the file."""


@dataclass
class RunRecord:
    """Everything a report needs from one run folder."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    final: Optional[dict[str, Any]] = None
    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: Optional[dict[str, Any]] = None  # profile.json, when kdlab profile was run on the folder

    @property
    def completed(self) -> bool:
        return bool(self.final and self.final.get("completed"))

    @property
    def seed(self) -> Optional[int]:
        seed = self.config.get("trainer", {}).get("seed")
        return int(seed) if isinstance(seed, int) else None

    @property
    def label_free(self) -> bool:
        return self.config.get("distill", {}).get("labels", True) is False

    @property
    def train_seconds(self) -> float:
        """Training time measured by the trainer (sum of epoch times; setup and evaluation excluded)."""
        if self.final and isinstance(self.final.get("train_seconds"), (int, float)):
            return float(self.final["train_seconds"])
        return float(sum(number(row.get("seconds")) or 0.0 for row in self.metrics))


def number(value: Any) -> Optional[float]:
    """``value`` as a finite float, else None (metrics.jsonl stores NaN/Inf as strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path} is not UTF-8 text (byte {err.start}): not valid JSON") from None
    except RecursionError:
        raise RunFolderError(f"{path} nests JSON too deeply to read") from None


#: the keys of final.json that reports read, with the JSON types each may have
_FINAL_TYPES: dict[str, tuple[type, ...]] = {"completed": (bool,), "train_seconds": (int, float), "epochs": (int,)}


def read_final(path: Path) -> dict[str, Any]:
    """``final.json`` (the trainer's summary of a completed run), checked for the keys reports read.

    It must be a JSON object with a boolean ``completed``; ``train_seconds`` and ``epochs``, when
    present, must be numbers. Anything else raises :class:`RunFolderError` naming the file.
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object (the trainer's run summary), got {type(data).__name__}")
    if "completed" not in data:
        raise RunFolderError(f"{path} lacks 'completed': not the final.json kdlab train writes")
    for key, types in _FINAL_TYPES.items():
        value = data.get(key)
        if key in data and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
            expected = " or ".join(t.__name__ for t in types)
            raise RunFolderError(f"{path}: {key!r} must be {expected}, got {type(value).__name__} {value!r:.40}")
    return data


def read_metrics_file(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl, as the trainer reads it on resume (a torn last line skipped with a warning)."""
    from kdlab.engine.metrics_log import MetricsLog, MetricsLogError

    try:
        return MetricsLog(path).read()
    except MetricsLogError as err:
        raise RunFolderError(str(err)) from None


def read_evaluation(path: Path) -> dict[str, dict[str, Any]]:
    """``eval.json`` as ``{"last": {...}, "best": {...}}`` (a flat mapping counts as "last")."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if data and all(isinstance(value, dict) for value in data.values()):
        return {str(key): value for key, value in data.items()}
    return {"last": data}


def read_profile(path: str | Path) -> Optional[dict[str, Any]]:
    """``<run>/profile.json`` (written by ``kdlab profile``), or None when the run was not profiled."""
    profile_path = Path(path) / PROFILE_FILE
    if not profile_path.is_file():
        return None
    data = _read_json(profile_path)
    if not isinstance(data, dict) or not isinstance(data.get("summary"), str):
        raise RunFolderError(f"{profile_path} is not a kdlab profile (a JSON object with a summary)")
    return data


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The resolved config the trainer wrote to ``<run>/config.yaml`` ({} when there is none)."""
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        return {}
    try:
        text = config_path.read_text(encoding="utf-8")
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise RunFolderError(f"{config_path} is not valid YAML: {describe_yaml_error(err, text)}") from None
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{config_path} is not UTF-8 text (byte {err.start}): not valid YAML") from None
    if not isinstance(config, dict):
        raise RunFolderError(f"{config_path} must be a mapping, got {type(config).__name__}")
    return config


def load_run(path: str | Path) -> RunRecord:
    """Read one run folder (it must contain metrics.jsonl).

    A ``final.json`` that is not JSON or not the trainer's summary (:func:`read_final`) raises
    :class:`RunFolderError` naming the file.
    """
    path = Path(path)
    metrics_path = path / METRICS_FILE
    if not metrics_path.is_file():
        raise RunFolderError(f"{path} is not a run folder: {METRICS_FILE} is missing")
    config = read_run_config(path)
    final_path = path / FINAL_FILE
    final = read_final(final_path) if final_path.is_file() else None
    eval_path = path / EVAL_FILE
    evaluation = read_evaluation(eval_path) if eval_path.is_file() else {}
    return RunRecord(path, config, read_metrics_file(metrics_path), final, evaluation, read_profile(path))


def find_run_dirs(roots: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Every run folder at or below each root, as (root, run folder), sorted, without duplicates."""
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        candidates = [root / METRICS_FILE] if (root / METRICS_FILE).is_file() else []
        if root.is_dir():
            candidates += sorted(root.rglob(METRICS_FILE))
        for metrics_path in candidates:
            run = metrics_path.parent
            key = run.resolve()
            if key not in seen:
                seen.add(key)
                found.append((root, run))
    return found
