"""Turn a config into the objects a run needs: device, data, student, teacher, method."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from kdlab.config import Config, ConfigError
from kdlab.config.teacher_source import resolve_teacher_source  # noqa: F401 - re-exported
from kdlab.engine.teacher import FrozenTeacher
from kdlab.models.registry import OptionalDependencyError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def channels_last(cfg: Config) -> bool:
    """``trainer.channels_last``, with null (the default) meaning on."""
    return True if cfg.trainer.channels_last is None else bool(cfg.trainer.channels_last)


def teacher_precision(cfg: Config) -> str:
    """``teacher.precision``, with null (the default) meaning the run's ``trainer.precision``."""
    return cfg.teacher.precision or cfg.trainer.precision


def autocast_for(cfg: Config, device: torch.device) -> Optional[torch.autocast]:
    """bf16 autocast when asked (losses upcast to fp32 inside); None for fp32."""
    if cfg.trainer.precision != "bf16":
        return None
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def with_views(cfg: Config) -> Config:
    """The config with the data views the loss terms need (e.g. SSKD's rotate4)."""
    from kdlab.methods.build import required_views

    views = required_views(cfg)
    if views is None or cfg.data.views == views:
        return cfg
    if cfg.data.views != "single":
        raise ConfigError(f"data.views={cfg.data.views!r} but the loss terms need {views!r}")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, views=views))


def model_kwargs(kwargs: dict[str, Any], in_chans: int, name: str) -> dict[str, Any]:
    """The model's options plus ``in_chans`` for non-RGB data (zoo and timm models take it; torchvision's not)."""
    out = dict(kwargs)
    if in_chans != 3 and not name.startswith("tv:"):
        out.setdefault("in_chans", in_chans)
    return out


def build_student(cfg: Config, num_classes: int, in_chans: int, *, unsafe_load: bool = False) -> nn.Module:
    """The network in ``model.*`` (weights from ``model.checkpoint`` if set; pickles only with ``unsafe_load``)."""
    from kdlab.models import create_model

    classes = cfg.model.num_classes or num_classes
    try:
        return create_model(
            cfg.model.name,
            num_classes=classes,
            checkpoint=cfg.model.checkpoint,
            unsafe_load=unsafe_load,
            **model_kwargs(cfg.model.kwargs, in_chans, cfg.model.name),
        )
    except OptionalDependencyError as err:
        raise _missing_package(f"model.name={cfg.model.name}", err) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model ({cfg.model.name}): {err}") from None


def build_teacher(
    cfg: Config, num_classes: int, in_chans: int, data_mean: Any, data_std: Any, *, unsafe_load: bool = False
) -> Optional[FrozenTeacher]:
    """The frozen teacher of ``teacher.*``, or None when no teacher is configured."""
    if cfg.teacher.name is None and cfg.teacher.checkpoint is None:
        return None
    from kdlab.models import create_model

    name, checkpoint, kwargs, classes = resolve_teacher_source(cfg)
    try:
        model = create_model(
            name,
            num_classes=classes or num_classes,
            checkpoint=checkpoint,
            unsafe_load=unsafe_load,
            **model_kwargs(kwargs, in_chans, name),
        )
    except OptionalDependencyError as err:
        where = f"teacher.name={name}" if cfg.teacher.name else f"teacher.checkpoint={cfg.teacher.checkpoint} ({name})"
        raise _missing_package(where, err) from None
    except (TypeError, ValueError) as err:
        hint = ""
        if classes is None and "shape mismatches" in str(err):
            hint = (
                f" [the teacher was built for the dataset's {num_classes} classes: a teacher trained on "
                "other classes does not fit this dataset]"
            )
        raise ConfigError(f"teacher ({name}, {checkpoint}): {err}{hint}") from None
    if cfg.teacher.embedding_only:
        model.reset_classifier(0)
    try:
        return FrozenTeacher(
            model, data_mean, data_std, cfg.teacher.mean, cfg.teacher.std,
            fold_batchnorm=cfg.teacher.fold_batchnorm, compile=cfg.teacher.compile,
            precision=teacher_precision(cfg),
        )
    except ValueError as err:
        raise ConfigError(f"teacher: {err}") from None


def _missing_package(where: str, err: OptionalDependencyError) -> ConfigError:
    """One line naming the config key, the package it needs and how to install it."""
    return ConfigError(f"{where} needs the optional dependency {err.package}, which is not installed: {err.install}")


_FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(optim: Any, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """SGD or AdamW of ``optim.*``; fused (one kernel for all parameters) on CPU and CUDA."""
    fused = {"fused": True} if device.type in _FUSED_DEVICES and params else {}
    if optim.name == "sgd":
        return torch.optim.SGD(
            params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
            nesterov=optim.nesterov, **fused,
        )
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, **fused)


def finite_check_mode(cfg: Config, device: torch.device) -> str:
    """``step`` or ``deferred`` for ``trainer.finite_check`` (auto: deferred where a host read stalls)."""
    mode = cfg.trainer.finite_check
    if mode == "auto":
        mode = "deferred" if device.type == "cuda" else "step"
    if mode == "deferred" and device.type not in _FUSED_DEVICES:
        raise ConfigError(
            f"trainer.finite_check=deferred needs a fused optimizer, which {device.type} lacks; use step"
        )
    return mode
