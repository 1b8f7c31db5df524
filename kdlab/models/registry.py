"""Model registry: ``create_model(name)`` for the zoo, ``tv:<name>``, ``timm:<name>`` and ``det:<name>``.

Zoo files register their constructors with :func:`register_model`. Names with
a ``tv:`` prefix build torchvision models, ``timm:`` timm models (imported
lazily: timm is optional); both are wrapped in feature adapters so every model
returned here satisfies :class:`kdlab.models.features.FeatureModel`. ``det:``
names build torchvision Faster R-CNN detectors (:mod:`kdlab.models.detection`),
which keep torchvision's detection contract instead. Weights
are never downloaded: pretrained weights come in through ``checkpoint=``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar, overload

from torch import nn

PathLike = str | os.PathLike[str]
ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)

TV_PREFIX = "tv:"
TIMM_PREFIX = "timm:"
DET_PREFIX = "det:"
RESERVED_PREFIXES = (TV_PREFIX, TIMM_PREFIX, DET_PREFIX)

_REGISTRY: dict[str, ModelFactory] = {}


class OptionalDependencyError(ImportError):
    """A model family needs an optional package that is not installed.

    ``package`` is what is missing and ``install`` the command that adds it (the
    pyproject extra first); callers that know the config key put it in front.
    """

    def __init__(self, for_what: str, package: str, extra: str) -> None:
        self.for_what = for_what
        self.package = package
        self.install = f"pip install 'kdlab[{extra}]' (or pip install {package})"
        super().__init__(f"{for_what} needs the optional dependency {package}, which is not installed: {self.install}")


@overload
def register_model(fn: F) -> F: ...


@overload
def register_model(fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...


def register_model(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Register a zoo constructor under ``name`` (default: the function's name).

    The constructor takes ``num_classes`` first plus its own keyword options.
    Usable as ``@register_model`` or ``@register_model(name="...")``.
    """

    def decorate(factory: F) -> F:
        key = name or factory.__name__
        if key.startswith(RESERVED_PREFIXES):
            raise ValueError(
                f"model name {key!r} uses a reserved prefix ({', '.join(repr(p) for p in RESERVED_PREFIXES)})"
            )
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"model name {key!r} is already registered (by {_REGISTRY[key].__module__})")
        _REGISTRY[key] = factory
        return factory

    return decorate(fn) if fn is not None else decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted zoo model names, optionally filtered by a case-insensitive glob (``"resnet*"``).

    ``"tv:<glob>"`` lists torchvision classification models, ``"timm:<glob>"``
    timm's (needs timm installed), ``"det:<glob>"`` the buildable detectors; all
    come back with their prefix.
    """
    if pattern is not None and pattern.startswith(TV_PREFIX):
        from kdlab.models.tv_adapter import torchvision_model_names

        return _prefixed(TV_PREFIX, torchvision_model_names(), pattern[len(TV_PREFIX) :])
    if pattern is not None and pattern.startswith(TIMM_PREFIX):
        from kdlab.models.timm_adapter import import_timm

        rest = pattern[len(TIMM_PREFIX) :] or "*"
        return [TIMM_PREFIX + n for n in import_timm(pattern).list_models(rest)]
    if pattern is not None and pattern.startswith(DET_PREFIX):
        from kdlab.models.detection import list_detector_names

        rest = (pattern[len(DET_PREFIX) :] or "*").lower()
        return [n for n in list_detector_names() if fnmatch.fnmatchcase(n[len(DET_PREFIX) :].lower(), rest)]
    names = sorted(_REGISTRY, key=str.lower)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower())]


def _prefixed(prefix: str, names: list[str], pattern: str) -> list[str]:
    pattern = (pattern or "*").lower()
    return [prefix + n for n in sorted(names) if fnmatch.fnmatchcase(n.lower(), pattern)]


def close_matches(name: str, candidates: list[str], n: int = 5) -> list[str]:
    """Candidates that look like ``name`` (case-insensitive), best first."""
    by_lower = {c.lower(): c for c in candidates}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5)]


def unknown_name_error(name: str, candidates: list[str], what: str) -> ValueError:
    suggestions = close_matches(name, candidates)
    hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    return ValueError(f"unknown {what} {name!r}{hint} (list_models() shows all {len(candidates)})")


def create_model(
    name: str,
    num_classes: int = 100,
    checkpoint: PathLike | None = None,
    *,
    unsafe_load: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name and optionally load weights into it.

    Args:
        name: a zoo name (``list_models()``), ``"tv:<torchvision name>"``, ``"timm:<timm name>"`` or
            ``"det:fasterrcnn_<backbone>_fpn"`` (a detector; see :func:`kdlab.models.detection.create_detector`
            for its options, e.g. ``backbone_checkpoint=``).
        num_classes: classifier outputs; 0 builds an embedding model (logits = embedding).
        checkpoint: a weights file in any format :func:`kdlab.models.load_checkpoint` reads.
        unsafe_load: allow a checkpoint that needs full unpickling (trusted files only; ``--unsafe-load``).
        **kwargs: options of the constructor (e.g. ``in_chans=1``, ``shortcut="A"`` for CIFAR ResNets; for
            ``timm:`` names timm's own, e.g. ``img_size=32, patch_size=8``, plus kdlab's ``stage_indices``;
            ``pretrained=True`` is refused: see :mod:`kdlab.models.timm_adapter`).

    Returns:
        An ``nn.Module`` satisfying :class:`kdlab.models.features.FeatureModel`; for ``det:`` names a
        ``torchvision.models.detection.FasterRCNN`` with K + 1 predictor outputs (background added).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    if name.startswith(DET_PREFIX):
        from kdlab.models.detection import create_detector

        return create_detector(name, num_classes, checkpoint, unsafe_load=unsafe_load, **kwargs)
    if name.startswith(TV_PREFIX):
        from kdlab.models.tv_adapter import create_torchvision_model

        model: nn.Module = create_torchvision_model(name[len(TV_PREFIX) :], num_classes, **kwargs)
    elif name.startswith(TIMM_PREFIX):
        from kdlab.models.timm_adapter import create_timm_model

        model = create_timm_model(name[len(TIMM_PREFIX) :], num_classes, **kwargs)
    else:
        model = _create_zoo_model(name, num_classes, kwargs)
    if checkpoint is not None:
        from kdlab.models.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint, unsafe=unsafe_load)
    return model


def _create_zoo_model(name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise unknown_name_error(name, list(_REGISTRY), "model")
    _check_kwargs(name, factory, kwargs)
    return factory(num_classes=num_classes, **kwargs)


def _check_kwargs(name: str, factory: ModelFactory, kwargs: dict[str, Any]) -> None:
    """Name an unknown option and list the valid ones, instead of a bare TypeError."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p != "num_classes"]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(repr(k) for k in unknown)}; "
            f"it accepts: {', '.join(accepted) or '(none)'}"
        )
