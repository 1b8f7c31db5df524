"""Config ``distill.terms`` -> a :class:`Distiller` with validated term parameters."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Optional

import torch
from torch import nn

from kdlab.config import Config, ConfigError
from kdlab.methods.base import BuildContext, LossTerm, term_registry
from kdlab.methods.distiller import Distiller


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
    params = {k: v for k, v in raw.items() if k not in ("name", "weight", "key")}
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
    return specs


def prerequisites(cfg: Config) -> list[Any]:
    """Every run the configured terms need finished first (see LossTerm.prerequisites)."""
    needed = []
    for i, raw in enumerate(cfg.distill.terms):
        cls, _, _, params = _spec(i, raw, cfg.task)
        needed.extend(cls.prerequisites(cfg, params))
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
    specs = term_specs(cfg)
    for i, (cls, key, _, _) in enumerate(specs):
        if cls.needs_labels and not cfg.distill.labels:
            raise ConfigError(f"distill.terms[{i}] ({key}) needs labels but distill.labels is false")
        if cls.needs_teacher and teacher is None:
            raise ConfigError(f"distill.terms[{i}] ({key}) needs a teacher: set teacher.name and teacher.checkpoint")

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
    ctx = BuildContext(
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
        student_probe=probe_features(student, in_chans, image_size, device) if wants_features else None,
        teacher_probe=(
            probe_features(teacher, in_chans, image_size, device) if wants_features and teacher is not None else None
        ),
        extra=dict(extra or {}),
    )
    return Distiller(student, instantiate_terms(specs, ctx, device), teacher=teacher, labels=cfg.distill.labels)


def instantiate_terms(specs: list[tuple[type[LossTerm], str, float, dict[str, Any]]], ctx: Any, device: torch.device
                      ) -> list[tuple[str, LossTerm, float]]:
    """Each spec's term built from ``ctx`` and its parameters, on ``device``; a bad parameter names the term."""
    terms = []
    for i, (cls, key, weight, params) in enumerate(specs):
        try:
            term = cls(ctx, **params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"distill.terms[{i}] ({key}): {err}") from None
        terms.append((key, term.to(device), weight))
    return terms
