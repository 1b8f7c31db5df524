"""``kdlab profile``: the distilled student beside its teacher, as deployed networks.

For a run folder (or one of its checkpoints) the student is the run's trained network
(:func:`kdlab.deploy.student.load_student`) and the teacher the one its config names, with its
weights (``teacher.checkpoint``). For a config (no run yet) both are the configured architectures
with fresh weights: their cost is known, their accuracy is not.

Each network is measured by :func:`kdlab.deploy.measure.measure_network` (conventions there:
MACs = FLOPs / 2 at batch 1, MB = 10^6 bytes, latency = median over timed CPU forwards at a fixed
thread count). Both are measured as plain networks in eval mode: no BatchNorm folding, no
compilation, no input re-normalisation for either, so the comparison is like for like.

Accuracy (top-1 %) comes from the runs: the student's from its run's metrics.jsonl (the epoch the
profiled checkpoint was written at), the teacher's from the teacher's own kdlab run folder when
``teacher.checkpoint`` lies in one. ``evaluate=True`` measures both on the config's evaluation
split instead. Unknown accuracies are None, with a note saying why.

Several teachers (``teachers:``): every one is profiled (``teachers``, by key); ``teacher`` is the
first in the config's order, and the ratios and summary compare the student with it.

The result is one JSON-ready dict (see :func:`profile_path`); ``profile.json`` in the run folder
holds the same object, which ``kdlab report`` shows and ``kdlab demo`` summarises.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

import kdlab
from kdlab.config import Config, ConfigError, load_config
from kdlab.deploy.measure import (
    LATENCY_CONVENTION,
    MACS_CONVENTION,
    SIZE_CONVENTION,
    TimingSettings,
    measure_network,
)
from kdlab.deploy.run_top1 import top1_of_checkpoint
from kdlab.deploy.student import DEFAULT_CHECKPOINT, DataFacts, build_student_network, load_student
from kdlab.reporting.runs import PROFILE_FILE

#: the version of the profile.json schema (the keys below); bumped when a key changes meaning
SCHEMA_VERSION = 1
CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass
class TeacherNetwork:
    """One teacher as profiled: its config view, architecture, weights file (None: fresh) and network."""

    key: Optional[str]
    cfg: Config
    name: str
    kwargs: dict[str, Any]
    checkpoint: Optional[str]
    model: nn.Module
    note: Optional[str] = None


# ----------------------------------------------------------------------------- building the networks
def _create(name: str, num_classes: int, checkpoint: Optional[str], kwargs: dict[str, Any], in_chans: int,
            unsafe_load: bool) -> nn.Module:
    from kdlab.engine.builders import model_kwargs
    from kdlab.models import create_model

    try:
        model = create_model(name, num_classes=num_classes, checkpoint=checkpoint, unsafe_load=unsafe_load,
                             **model_kwargs(kwargs, in_chans, name))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"teacher ({name}, {checkpoint or 'fresh weights'}): {err}") from None
    return model.eval()


def _sibling_architecture(config_path: Path, checkpoint: str) -> Optional[tuple[str, dict[str, Any], Path]]:
    """(name, kwargs, config) of the config beside ``config_path`` that trains the missing ``checkpoint``.

    ``configs/demo/kd.yaml`` distils from ``runs/demo/teacher``, which ``configs/demo/teacher.yaml``
    writes (its ``trainer.out_dir``): before the teacher is trained, that config says its architecture.
    """
    target = Path(checkpoint).resolve()
    targets = {target, target.parent.parent} if target.suffix == ".pt" else {target}
    for candidate in sorted(config_path.parent.glob("*.y*ml")):
        if candidate.resolve() == config_path.resolve() or candidate.suffix not in CONFIG_SUFFIXES:
            continue
        try:
            other = load_config(candidate)
        except Exception:  # noqa: BLE001 - a partial or foreign YAML beside the config is simply not the one
            continue
        if Path(other.trainer.out_dir).resolve() in targets:
            return other.model.name, dict(other.model.kwargs), candidate
    return None


def _fresh_teacher(view: Config, facts: DataFacts, config_path: Path) -> tuple[str, dict[str, Any], str]:
    """(name, kwargs, note) of a configured teacher whose weights do not exist yet."""
    checkpoint = view.teacher.checkpoint
    if view.teacher.name is not None:
        return view.teacher.name, dict(view.teacher.kwargs), f"teacher.checkpoint={checkpoint} does not exist yet"
    found = _sibling_architecture(config_path, checkpoint) if checkpoint else None
    if found is None:
        raise ConfigError(
            f"teacher.checkpoint={checkpoint} does not exist and teacher.name is not set, so the teacher's "
            "architecture is unknown: train the teacher first or pass teacher.name=ARCH"
        )
    name, kwargs, source = found
    return name, {**kwargs, **view.teacher.kwargs}, (
        f"teacher.checkpoint={checkpoint} does not exist yet; its architecture is that of {source}, which writes it")


def _teacher_views(cfg: Config) -> list[tuple[Optional[str], Config]]:
    from kdlab.config.teacher_source import single_teacher_view

    if cfg.teachers:
        return [(key, single_teacher_view(cfg, key)) for key in cfg.teachers]
    if cfg.teacher.name is None and cfg.teacher.checkpoint is None:
        raise ConfigError("the config names no teacher (teacher.name / teacher.checkpoint / teachers): "
                          "kdlab profile compares a distilled student with its teacher")
    return [(None, cfg)]


def build_teachers(cfg: Config, facts: DataFacts, *, config_path: Optional[Path] = None,
                   unsafe_load: bool = False) -> list[TeacherNetwork]:
    """Every teacher of ``cfg`` as a plain network in eval mode on the CPU, the whole network (classifier kept).

    With ``config_path`` (profiling a config) a teacher whose weights do not exist yet is built with
    fresh weights: from ``teacher.name``, or from the config beside it that trains it.
    """
    from kdlab.config.teacher_source import resolve_teacher_source

    teachers = []
    for key, view in _teacher_views(cfg):
        checkpoint = view.teacher.checkpoint
        if config_path is not None and (checkpoint is None or not Path(checkpoint).exists()):
            name, kwargs, note = _fresh_teacher(view, facts, config_path)
            classes = view.teacher.num_classes or facts.num_classes
            model = _create(name, classes, None, kwargs, facts.in_chans, unsafe_load)
            teachers.append(TeacherNetwork(key, view, name, kwargs, None, model, note))
            continue
        try:
            name, weights, kwargs, classes = resolve_teacher_source(view)
        except ConfigError as err:
            if checkpoint is not None and not Path(checkpoint).is_absolute() and not Path(checkpoint).exists():
                raise ConfigError(f"{err} (a relative path in the run's config is read from the current folder, "
                                  f"{Path.cwd()}: run kdlab profile where the run was trained)") from None
            raise
        model = _create(name, classes or facts.num_classes, weights, kwargs, facts.in_chans, unsafe_load)
        teachers.append(TeacherNetwork(key, view, name, kwargs, weights, model))
    return teachers


def facts_of_config(cfg: Config) -> DataFacts:
    """The input and output of ``cfg``'s dataset (it must be readable here; the demo digits are embedded)."""
    from kdlab.data import build_data

    return DataFacts.from_bundle(build_data(dataclasses.replace(cfg.data, num_workers=0), seed=cfg.trainer.seed))


# ----------------------------------------------------------------------------- accuracy
def _run_accuracy(checkpoint: Optional[str | Path], epoch: Optional[int], data_name: str) -> tuple[dict[str, Any],
                                                                                                   list[str]]:
    """The ``top1*`` fields of a network from its kdlab run, and notes on what is missing or differs."""
    empty = {"top1": None, "top1_final": None, "top1_best": None, "top1_metric": None, "top1_source": None}
    if checkpoint is None:
        return empty, []
    found = top1_of_checkpoint(checkpoint, epoch)
    if found is None:
        return empty, [f"{checkpoint} is not inside a kdlab run folder: its top-1 is unknown (--evaluate measures it)"]
    notes = []
    if found.data_name is not None and found.data_name != data_name:
        notes.append(f"the top-1 of {found.run_dir} was measured on data.name={found.data_name}, not {data_name}")
    if found.top1 is None:
        notes.append(f"{found.run_dir} recorded no top-1 for {Path(checkpoint).name}")
    return found.to_dict(), notes


def evaluate_networks(cfg: Config, student: nn.Module, teachers: Sequence[TeacherNetwork],
                      facts: DataFacts) -> tuple[Optional[float], list[Optional[float]], str]:
    """Top-1 (%) of the student and each teacher on ``cfg``'s evaluation split, on the CPU.

    The teacher sees the data as in training: re-normalised to ``teacher.mean/std`` when set
    (:class:`kdlab.engine.teacher.FrozenTeacher`, unfolded, fp32). A label-free student's classifier
    was never trained: its top-1 is None.
    """
    from kdlab.data import build_data
    from kdlab.engine.evaluate import classify
    from kdlab.engine.teacher import FrozenTeacher

    data = build_data(dataclasses.replace(cfg.data, num_workers=0), seed=cfg.trainer.seed)
    student_top1 = classify(student, data.eval)["top1"] if cfg.distill.labels else None
    teacher_top1 = []
    for teacher in teachers:
        frozen = FrozenTeacher(teacher.model, facts.mean, facts.std, teacher.cfg.teacher.mean,
                               teacher.cfg.teacher.std, fold_batchnorm=False, precision="fp32")
        teacher_top1.append(classify(frozen, data.eval)["top1"])
    return student_top1, teacher_top1, f"measured on the evaluation split ({data.eval.num_samples} images, CPU)"


# ----------------------------------------------------------------------------- the profile object
def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def ratios(teacher: dict[str, Any], student: dict[str, Any]) -> dict[str, Optional[float]]:
    """Teacher over student: params, MACs, latency (batch-1 medians), latency at the large batch, size;
    ``images_per_second`` is student over teacher (how many times the throughput)."""
    return {
        "params": _ratio(teacher["params"], student["params"]),
        "macs": _ratio(teacher["macs"], student["macs"]),
        "latency": _ratio(teacher["latency_ms_batch1"], student["latency_ms_batch1"]),
        "latency_batch": _ratio(teacher["latency_ms_batch"], student["latency_ms_batch"]),
        "size": _ratio(teacher["size_mb"], student["size_mb"]),
        "images_per_second": _ratio(student["images_per_second"], teacher["images_per_second"]),
    }


def _network_entry(name: str, kwargs: dict[str, Any], checkpoint: Optional[str | Path], model: nn.Module,
                   facts: DataFacts, settings: TimingSettings) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "kwargs": dict(kwargs),
                             "checkpoint": None if checkpoint is None else str(checkpoint),
                             "weights": "trained" if checkpoint is not None else "fresh"}
    entry.update(measure_network(model, facts.in_chans, facts.image_size, settings))
    return entry


def _assemble(*, source: dict[str, Any], cfg: Config, facts: DataFacts, student_model: nn.Module,
              student_checkpoint: Optional[Path], student_epoch: Optional[int], teachers: Sequence[TeacherNetwork],
              settings: TimingSettings, evaluate: bool, notes: list[str]) -> dict[str, Any]:
    from kdlab.deploy.profile_text import summary_line

    settings.validate()
    student = _network_entry(cfg.model.name, cfg.model.kwargs, student_checkpoint, student_model, facts, settings)
    profiled = [_network_entry(t.name, t.kwargs, t.checkpoint, t.model, facts, settings) for t in teachers]
    notes = [*notes, *(t.note for t in teachers if t.note)]
    top1, more = _run_accuracy(student_checkpoint, student_epoch, cfg.data.name)
    student.update(top1)
    notes += more
    for teacher, entry in zip(teachers, profiled):
        top1, more = _run_accuracy(teacher.checkpoint, None, cfg.data.name)
        entry.update(top1)
        notes += more
    if evaluate:
        student_top1, teacher_top1, how = evaluate_networks(cfg, student_model, teachers, facts)
        student.update(top1=student_top1, top1_source=how if student_top1 is not None else None)
        if student_top1 is None:
            notes.append("label-free student (distill.labels: false): its classifier was never trained, no top-1")
        for entry, value in zip(profiled, teacher_top1):
            entry.update(top1=value, top1_source=how)
    if student_checkpoint is None:
        notes.append("profile of a config: fresh weights, so no top-1; profile a trained run folder for accuracy")
    first = profiled[0]
    delta = None if student["top1"] is None or first["top1"] is None else student["top1"] - first["top1"]
    profile: dict[str, Any] = {
        "kind": "kdlab.profile",
        "schema": SCHEMA_VERSION,
        "kdlab_version": kdlab.__version__,
        "source": source,
        "input": {"in_chans": facts.in_chans, "image_size": facts.image_size, "num_classes": facts.num_classes},
        "settings": {
            "device": "cpu", "threads": settings.threads, "warmup": settings.warmup, "repeats": settings.repeats,
            "max_seconds": settings.max_seconds, "batch_size": settings.batch_size, "torch": torch.__version__,
            "macs": MACS_CONVENTION, "size": SIZE_CONVENTION, "latency": LATENCY_CONVENTION,
        },
        "teacher": first,
        "student": student,
        "ratios": ratios(first, student),
        "top1_delta": delta,
        "notes": notes,
    }
    if len(teachers) > 1:
        profile["teacher_key"] = teachers[0].key
        profile["teachers"] = {t.key: entry for t, entry in zip(teachers, profiled)}
    profile["summary"] = summary_line(profile)
    return profile


def profile_run(path: str | Path, *, which: str = DEFAULT_CHECKPOINT, settings: TimingSettings = TimingSettings(),
                evaluate: bool = False, unsafe_load: bool = False) -> dict[str, Any]:
    """The profile of a run folder's (or a kdlab checkpoint's) student beside its teacher."""
    loaded = load_student(path, which, unsafe_load=unsafe_load)
    teachers = build_teachers(loaded.config, loaded.facts, unsafe_load=unsafe_load)
    source = {"kind": "run", "path": str(path), "run_dir": None if loaded.run_dir is None else str(loaded.run_dir),
              "checkpoint": str(loaded.checkpoint), "epoch": loaded.epoch}
    return _assemble(source=source, cfg=loaded.config, facts=loaded.facts, student_model=loaded.model,
                     student_checkpoint=loaded.checkpoint, student_epoch=loaded.epoch, teachers=teachers,
                     settings=settings, evaluate=evaluate, notes=[])


def profile_config(config_path: str | Path, overrides: Sequence[str] = (), *,
                   settings: TimingSettings = TimingSettings(), unsafe_load: bool = False) -> dict[str, Any]:
    """The profile of a config's student and teacher architectures (fresh student weights; no top-1)."""
    from kdlab.config.recipes import resolve_config

    config_path = resolve_config(config_path)  # a file, or the recipe of that name
    cfg = load_config(config_path, list(overrides))
    if cfg.task != "classification":
        raise ConfigError(f"{config_path}: task {cfg.task!r}: kdlab profile measures classification networks")
    facts = facts_of_config(cfg)
    student = build_student_network(cfg, facts).eval()
    teachers = build_teachers(cfg, facts, config_path=config_path, unsafe_load=unsafe_load)
    source = {"kind": "config", "path": str(config_path), "overrides": list(overrides), "run_dir": None,
              "checkpoint": None, "epoch": None}
    return _assemble(source=source, cfg=cfg, facts=facts, student_model=student, student_checkpoint=None,
                     student_epoch=None, teachers=teachers, settings=settings, evaluate=False, notes=[])


def is_config_path(path: str | Path) -> bool:
    """A ``.yaml`` file, or a shipped recipe's name that is not a path on disk (``demo/kd``)."""
    from kdlab.config.recipes import find_recipe

    if Path(path).suffix in CONFIG_SUFFIXES:
        return True
    return not Path(path).exists() and find_recipe(str(path)) is not None


def profile_path(path: str | Path, overrides: Sequence[str] = (), *, which: str = DEFAULT_CHECKPOINT,
                 settings: TimingSettings = TimingSettings(), evaluate: bool = False,
                 unsafe_load: bool = False) -> dict[str, Any]:
    """:func:`profile_config` for a ``.yaml`` file, else :func:`profile_run` (a run folder or checkpoint).

    The object's keys: ``teacher`` and ``student`` (each ``name``, ``params``, ``macs`` per image,
    ``size_mb`` (fp32 state dict), ``size_mb_fp16``, ``latency_ms_batch1`` (median), ``latency_ms_batch``
    (median at ``settings.batch_size``), ``latency`` (the spread of both), ``images_per_second`` (at the
    large batch), ``top1``, ``top1_final``, ``top1_best``, ``top1_source``), ``ratios`` (teacher / student:
    ``params``, ``macs``, ``latency``, ...), ``top1_delta`` (student - teacher, points), ``summary``,
    ``settings`` (how it was measured), ``input``, ``source``, ``notes``.
    """
    if is_config_path(path):
        if evaluate:
            raise ConfigError(f"--evaluate measures trained networks: {path} is a config (fresh weights); "
                              "profile a run folder instead")
        if Path(path).suffix in CONFIG_SUFFIXES and not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        return profile_config(path, overrides, settings=settings, unsafe_load=unsafe_load)
    if overrides:
        raise ConfigError(f"overrides ({' '.join(overrides)}) apply to a CONFIG; {path} is a run folder or "
                          "checkpoint, whose config is what it was trained with")
    return profile_run(path, which=which, settings=settings, evaluate=evaluate, unsafe_load=unsafe_load)


def write_profile(profile: dict[str, Any], run_dir: str | Path) -> Path:
    """``<run_dir>/profile.json`` (indented JSON, the object :func:`profile_path` returns)."""
    from kdlab.checkpoint_io import atomic_write_text

    return atomic_write_text(Path(run_dir) / PROFILE_FILE, json.dumps(profile, indent=2) + "\n", what="the profile")


def check_profile_output(path: str | Path) -> None:
    """Before any measurement: the ``profile.json`` a RUN_DIR (or a checkpoint in one) gets is a regular
    file or a new path (:class:`~kdlab.checkpoint_io.OutputPathError` otherwise). A CONFIG writes nothing."""
    from kdlab.checkpoint_io import check_output_file
    from kdlab.deploy.run_top1 import run_folder_of

    if is_config_path(path):
        return
    run_dir = run_folder_of(path)
    if run_dir is not None:
        check_output_file(run_dir / PROFILE_FILE, "the profile (--no-write skips it)")


__all__ = [
    "SCHEMA_VERSION",
    "TeacherNetwork",
    "build_teachers",
    "evaluate_networks",
    "facts_of_config",
    "is_config_path",
    "profile_config",
    "profile_path",
    "profile_run",
    "ratios",
    "write_profile",
]
