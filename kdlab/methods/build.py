"""Config ``distill.terms`` -> a :class:`Distiller` with validated term parameters.

Every term entry takes the generic keys ``name``, ``weight``, ``key`` and, in a run with several
teachers (``teachers:``), ``teacher``: the key or index of the teacher it reads, or ``mean`` for the
weighted mean of their logits (docs/multi_teacher.md). The other keys are the term's parameters.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Optional, Sequence

import torch
from torch import nn

from kdlab.config import Config, ConfigError
from kdlab.config.teacher_source import TEACHER_MEAN, single_teacher_view
from kdlab.methods.base import STUDENT_ONLY_USES, BuildContext, LossTerm, term_registry
from kdlab.methods.distiller import Distiller

#: keys of a ``distill.terms`` entry that are not the term's own parameters
GENERIC_TERM_KEYS = ("name", "weight", "key", "teacher")


def term_parameters(cls: type[LossTerm]) -> dict[str, Any]:
    """The configurable parameters of a term and their defaults."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params}


def required_views(cfg: Config) -> Optional[str]:
    """The multi-view data layout the configured terms need, if any."""
    registry = term_registry(cfg.task)
    wanted = {registry[t["name"]].multiview for t in cfg.distill.terms if t.get("name") in registry}
    wanted.discard(None)
    if len(wanted) > 1:
        raise ConfigError(f"distill.terms need incompatible data views {sorted(wanted)}")
    return next(iter(wanted), None)


def _spec(i: int, raw: Any, task: Optional[str] = None) -> tuple[type[LossTerm], str, float, dict[str, Any]]:
    """One configured term; its name is looked up among ``task``'s terms first (a name may exist per task)."""
    where = f"distill.terms[{i}]"
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError(f"{where} must be a mapping with a name, e.g. {{name: kd, weight: 0.9}}; got {raw!r}")
    name = raw["name"]
    registry = term_registry(task) if task is not None else {}
    if name not in registry:  # another task's term: check_term_tasks then names the task
        registry = term_registry()
    if name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{where}.name={name!r} is not a loss term{hint}; see `kdlab list-methods`")
    cls = registry[name]
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ConfigError(f"{where}.weight must be a number, got {weight!r}")
    key = raw.get("key", name)
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}.key must be a non-empty string, got {key!r}")
    allowed = term_parameters(cls)
    params = {k: v for k, v in raw.items() if k not in GENERIC_TERM_KEYS}
    for param in params:
        if param not in allowed:
            close = difflib.get_close_matches(param, list(allowed), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            valid = ", ".join(allowed) or "none"
            raise ConfigError(f"{where}.{param}: not a parameter of term {name}{hint}; valid: {valid}")
    return cls, key, float(weight), params


def check_term_tasks(cfg: Config, specs: list[tuple[type[LossTerm], str, float, dict[str, Any]]]) -> None:
    """Every configured term belongs to the run's ``task``."""
    for i, (cls, key, _, _) in enumerate(specs):
        if cls.task != cfg.task:
            raise ConfigError(
                f"distill.terms[{i}] ({key}) is a {cls.task} term but task={cfg.task}; "
                f"set task: {cls.task} or use {cfg.task} terms (`kdlab list-methods`)"
            )


def term_specs(cfg: Config) -> list[tuple[type[LossTerm], str, float, dict[str, Any]]]:
    """``distill.terms`` validated: (class, key, weight, params) per term, keys distinct, tasks right."""
    specs = [_spec(i, raw, cfg.task) for i, raw in enumerate(cfg.distill.terms)]
    if not specs:
        raise ConfigError("distill.terms is empty: name at least one loss term, e.g. [{name: ce}]")
    keys = [key for _, key, _, _ in specs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"distill.terms: term {duplicates[0]!r} appears twice; give each a distinct `key`")
    check_term_tasks(cfg, specs)
    term_teachers(cfg, specs)
    return specs


def term_teachers(cfg: Config, specs: list[tuple[type[LossTerm], str, float, dict[str, Any]]]) -> list[Optional[str]]:
    """The teacher each term reads: a key of ``teachers``, ``"mean"``, or None (no teacher, or the one of teacher.*).

    With several teachers a term that reads one must say which (``teacher: KEY``, ``teacher: INDEX`` or
    ``teacher: mean``); with a single entry in ``teachers`` that one is meant. ``teacher: mean`` is for
    terms that read logits only. Any ``teacher:`` in a run without ``teachers`` is an error.
    """
    keys = list(cfg.teachers)
    out: list[Optional[str]] = []
    for i, ((cls, key, _, _), raw) in enumerate(zip(specs, cfg.distill.terms)):
        where = f"distill.terms[{i}] ({key})"
        given = isinstance(raw, dict) and "teacher" in raw
        choice = raw.get("teacher") if given else None
        if not keys:
            if given:
                raise ConfigError(
                    f"{where}.teacher={choice!r} selects one of several teachers, but this run has one (teacher.*); "
                    "remove it, or list the teachers under teachers: (docs/multi_teacher.md)"
                )
            out.append(None)
        elif not cls.needs_teacher:
            if given:
                raise ConfigError(f"{where}.teacher={choice!r}: term {cls.name} reads no teacher; remove teacher")
            out.append(None)
        elif not given:
            if len(keys) > 1:
                raise ConfigError(
                    f"{where} reads a teacher and this run has {len(keys)} (teachers: {', '.join(keys)}): choose one "
                    f"with teacher: KEY or teacher: INDEX, or teacher: {TEACHER_MEAN} for the weighted mean of their logits"
                )
            out.append(keys[0])
        elif choice == TEACHER_MEAN:
            if cls.uses - STUDENT_ONLY_USES != frozenset({"logits"}):
                other = ", ".join(sorted(cls.uses - {"logits"} - STUDENT_ONLY_USES))
                raise ConfigError(
                    f"{where}.teacher={TEACHER_MEAN}: the mean is of the teachers' logits, but term {cls.name} reads "
                    f"the teacher's {other}; select one teacher with teacher: KEY"
                )
            out.append(TEACHER_MEAN)
        elif isinstance(choice, int) and not isinstance(choice, bool):
            if not 0 <= choice < len(keys):
                raise ConfigError(
                    f"{where}.teacher={choice} is out of range: this run has {len(keys)} teachers "
                    f"(0..{len(keys) - 1}: {', '.join(keys)})"
                )
            out.append(keys[choice])
        elif isinstance(choice, str):
            if choice not in keys:
                close = difflib.get_close_matches(choice, keys, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"{where}.teacher={choice!r} is not a teacher key{hint}; teachers: {', '.join(keys)} "
                    f"(or an index, or {TEACHER_MEAN})"
                )
            out.append(choice)
        else:
            raise ConfigError(
                f"{where}.teacher must be a teacher key, an index or {TEACHER_MEAN}, got {choice!r}"
            )
    return out


def _config_for(cfg: Config, source: Optional[str]) -> Config:
    """The config a term sees: a single-teacher view of its teacher (what SSKD's head is derived from)."""
    if source is None or source == TEACHER_MEAN or not cfg.teachers:
        return cfg
    return single_teacher_view(cfg, source)


def prerequisites(cfg: Config) -> list[Any]:
    """Every run the configured terms need finished first (see LossTerm.prerequisites)."""
    specs = [_spec(i, raw, cfg.task) for i, raw in enumerate(cfg.distill.terms)]
    needed = []
    for (cls, _, _, params), source in zip(specs, term_teachers(cfg, specs)):
        needed.extend(cls.prerequisites(_config_for(cfg, source), params))
    return needed


@torch.no_grad()
def probe_features(model: nn.Module, in_chans: int, image_size: int, device: torch.device) -> Any:
    """Shapes of every feature on a 2-image dry run (eval mode: BatchNorm statistics untouched)."""
    was_training = model.training
    model.eval()
    try:
        return model.forward_all(torch.zeros(2, in_chans, image_size, image_size, device=device))
    finally:
        model.train(was_training)


def build_distiller(
    cfg: Config,
    student: nn.Module,
    teacher: Optional[nn.Module],
    *,
    num_classes: int,
    train_size: int,
    image_size: int,
    in_chans: int,
    steps_per_epoch: int,
    device: torch.device,
    extra: Optional[dict[str, Any]] = None,
) -> Distiller:
    """The run's Distiller; ``teacher`` is the frozen teacher, or a TeacherSet when ``teachers:`` is configured."""
    specs = term_specs(cfg)
    for i, (cls, key, _, _) in enumerate(specs):
        if cls.needs_labels and not cfg.distill.labels:
            raise ConfigError(f"distill.terms[{i}] ({key}) needs labels but distill.labels is false")
        if cls.needs_teacher and teacher is None:
            raise ConfigError(f"distill.terms[{i}] ({key}) needs a teacher: set teacher.name and teacher.checkpoint")
    if cfg.teachers:
        return _build_multi_teacher(
            cfg, specs, student, teacher, num_classes=num_classes, train_size=train_size, image_size=image_size,
            in_chans=in_chans, steps_per_epoch=steps_per_epoch, device=device, extra=extra,
        )

    needs_logits_match = any(cls.needs_teacher and "logits" in cls.uses for cls, _, _, _ in specs)
    teacher_classes = getattr(teacher, "num_classes", None)
    if needs_logits_match and teacher_classes == 0:
        names = [key for cls, key, _, _ in specs if cls.needs_teacher and "logits" in cls.uses]
        raise ConfigError(
            f"loss terms {names} compare logits, but teacher.embedding_only=true removed the teacher's classifier"
        )
    if needs_logits_match and teacher_classes not in (None, num_classes):
        raise ConfigError(
            f"teacher has {teacher_classes} classes but the student has {num_classes}: "
            "logit-based terms need the same classes (check teacher.num_classes / model.num_classes)"
        )

    wants_features = any(cls.uses - {"logits"} for cls, _, _, _ in specs)
    ctx = _build_context(
        cfg, student, teacher, num_classes=num_classes, train_size=train_size, image_size=image_size,
        in_chans=in_chans, steps_per_epoch=steps_per_epoch, device=device, extra=extra,
        student_probe=probe_features(student, in_chans, image_size, device) if wants_features else None,
        teacher_probe=(
            probe_features(teacher, in_chans, image_size, device) if wants_features and teacher is not None else None
        ),
    )
    return Distiller(student, instantiate_terms(specs, ctx, device), teacher=teacher, labels=cfg.distill.labels)


def _build_context(cfg: Config, student: nn.Module, teacher: Optional[nn.Module], *, num_classes: int,
                   train_size: int, image_size: int, in_chans: int, steps_per_epoch: int, device: torch.device,
                   extra: Optional[dict[str, Any]], student_probe: Any, teacher_probe: Any) -> BuildContext:
    return BuildContext(
        student=student,
        teacher=teacher,
        num_classes=num_classes,
        train_size=train_size,
        image_size=image_size,
        in_chans=in_chans,
        labels=cfg.distill.labels,
        seed=cfg.trainer.seed,
        epochs=cfg.trainer.epochs,
        steps_per_epoch=steps_per_epoch,
        head_hidden=cfg.distill.head_hidden,
        config=cfg,
        device=device,
        student_probe=student_probe,
        teacher_probe=teacher_probe,
        extra=dict(extra or {}),
    )


def _build_multi_teacher(
    cfg: Config,
    specs: list[tuple[type[LossTerm], str, float, dict[str, Any]]],
    student: nn.Module,
    teachers: Any,
    **sizes: Any,
) -> Distiller:
    """A Distiller over a TeacherSet: each term built with its own teacher as ``ctx.teacher`` / ``teacher_probe``.

    A term reading teacher ``k`` sees a BuildContext whose teacher, probe and config (a single-teacher view) are
    ``k``'s, so every term builds exactly as it would with ``k`` alone; a ``teacher: mean`` term sees the set
    (whose forward is the mean of the logits). Teachers whose logits a term reads must have the student's classes.
    """
    device = sizes["device"]
    names = getattr(teachers, "names", None)
    if names is None or tuple(names) != tuple(cfg.teachers):
        raise ConfigError(f"teachers: {', '.join(cfg.teachers)} are configured, but the run was given "
                          f"{type(teachers).__name__} rather than their TeacherSet")
    sources = term_teachers(cfg, specs)
    mean_keys = tuple(teachers.mean_keys)
    readers: dict[str, list[str]] = {}
    logit_readers: dict[str, list[str]] = {}
    for (cls, key, _, _), source in zip(specs, sources):
        if source is None:
            continue
        for name in (mean_keys if source == TEACHER_MEAN else (source,)):
            readers.setdefault(name, []).append(key)
            if "logits" in cls.uses:
                logit_readers.setdefault(name, []).append(key)
    for name in cfg.teachers:
        if name not in readers:
            why = " (its weight in teacher: mean is 0)" if TEACHER_MEAN in sources else ""
            raise ConfigError(f"teachers.{name} is read by no loss term{why}: select it with teacher: {name}, or remove it")
    for name, terms in logit_readers.items():
        classes = getattr(teachers[name], "num_classes", None)
        if classes == 0:
            raise ConfigError(
                f"loss terms {terms} compare logits, but teachers.{name}.embedding_only=true removed its classifier"
            )
        if classes not in (None, sizes["num_classes"]):
            raise ConfigError(
                f"teachers.{name} has {classes} classes but the student has {sizes['num_classes']}: logit-based terms "
                f"{terms} need the same classes (check teachers.{name}.num_classes / model.num_classes)"
            )

    wants_features = any(cls.uses - {"logits"} for cls, _, _, _ in specs)
    in_chans, image_size = sizes["in_chans"], sizes["image_size"]
    student_probe = probe_features(student, in_chans, image_size, device) if wants_features else None
    probes: dict[Optional[str], Any] = {None: None}
    contexts = []
    for source in sources:
        network = None if source is None else (teachers if source == TEACHER_MEAN else teachers[source])
        if wants_features and source not in probes:
            probes[source] = probe_features(network, in_chans, image_size, device)
        contexts.append(_build_context(
            _config_for(cfg, source), student, network, student_probe=student_probe,
            teacher_probe=probes.get(source) if wants_features else None, **sizes,
        ))
    terms = instantiate_terms(specs, contexts[0], device, contexts=contexts)
    for i, ((key, term, _), source) in enumerate(zip(terms, sources)):
        if source == TEACHER_MEAN and term.uses - {"logits"} - STUDENT_ONLY_USES:
            raise ConfigError(
                f"distill.terms[{i}] ({key}).teacher={TEACHER_MEAN}: the mean is of the teachers' logits, but this "
                f"term reads the teacher's {', '.join(sorted(term.uses - {'logits'} - STUDENT_ONLY_USES))}; "
                "select one teacher"
            )
    chosen = {key: source for (key, _, _), source in zip(terms, sources) if source is not None}
    return Distiller(student, terms, teacher=teachers, labels=cfg.distill.labels, sources=chosen)


def instantiate_terms(specs: list[tuple[type[LossTerm], str, float, dict[str, Any]]], ctx: Any, device: torch.device,
                      *, contexts: Optional[Sequence[Any]] = None) -> list[tuple[str, LossTerm, float]]:
    """Each spec's term built from ``ctx`` (or ``contexts[i]``) and its parameters, on ``device``; a bad parameter
    names the term."""
    terms = []
    for i, (cls, key, weight, params) in enumerate(specs):
        try:
            term = cls(ctx if contexts is None else contexts[i], **params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"distill.terms[{i}] ({key}): {err}") from None
        terms.append((key, term.to(device), weight))
    return terms
