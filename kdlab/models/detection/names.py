"""Detector names: ``det:fasterrcnn_<backbone>_fpn`` parsed into what to build.

Three names are torchvision's own Faster R-CNN builders and win over the
generic parse (``fasterrcnn_resnet50_fpn`` is the torchvision model, not "a
ResNet-50 body with kdlab's FPN"): their layout is the one torchvision's COCO
weight files have, so those files load with ``checkpoint=``. Every other name
wraps a kdlab zoo network (any ``list_models()`` name: they all expose
``forward_backbone``) or one of a few torchvision classifiers in an FPN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kdlab.models.registry import DET_PREFIX

NAME_HEAD = "fasterrcnn_"
NAME_TAIL = "_fpn"

#: torchvision's builders by detector name (without ``det:``) -> (builder function, classifier it wraps)
BUILDERS: dict[str, tuple[str, str]] = {
    "fasterrcnn_resnet50_fpn": ("fasterrcnn_resnet50_fpn", "resnet50"),
    "fasterrcnn_resnet50_fpn_v2": ("fasterrcnn_resnet50_fpn_v2", "resnet50"),
    "fasterrcnn_mobilenet_v3_large_fpn": ("fasterrcnn_mobilenet_v3_large_fpn", "mobilenet_v3_large"),
}
#: torchvision classifiers usable as the body of ``fasterrcnn_<name>_fpn``; the last two resolve to builders
TV_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large")

BackboneKind = Literal["builder", "zoo", "torchvision"]


@dataclass(frozen=True)
class DetectorSpec:
    """What a detector name asks for."""

    #: the name as given, with its ``det:`` prefix
    name: str
    kind: BackboneKind
    #: the zoo or torchvision classifier name of the backbone
    backbone: str
    #: the torchvision builder function (``kind == "builder"`` only)
    builder: str | None = None


def _zoo_names() -> list[str]:
    from kdlab.models.registry import list_models

    return list_models()


def list_detector_names() -> list[str]:
    """Every buildable detector name, with its ``det:`` prefix, sorted case-insensitively."""
    bodies = set(_zoo_names()) | set(TV_BACKBONES)
    names = {f"{DET_PREFIX}{NAME_HEAD}{b}{NAME_TAIL}" for b in bodies} | {DET_PREFIX + n for n in BUILDERS}
    return sorted(names, key=str.lower)


def parse_detector_name(name: str) -> DetectorSpec:
    """Resolve ``det:...`` (the prefix is optional here); unknown names raise with close matches."""
    bare = name[len(DET_PREFIX) :] if name.startswith(DET_PREFIX) else name
    full = DET_PREFIX + bare
    if bare in BUILDERS:
        builder, classifier = BUILDERS[bare]
        return DetectorSpec(full, "builder", classifier, builder)
    if bare.startswith(NAME_HEAD) and bare.endswith(NAME_TAIL) and len(bare) > len(NAME_HEAD) + len(NAME_TAIL):
        backbone = bare[len(NAME_HEAD) : -len(NAME_TAIL)]
        if backbone in _zoo_names():  # kdlab's own names first, as create_model resolves them
            return DetectorSpec(full, "zoo", backbone)
        if backbone in TV_BACKBONES:
            return DetectorSpec(full, "torchvision", backbone)
    raise unknown_detector_error(full)


def unknown_detector_error(name: str) -> ValueError:
    from kdlab.models.registry import close_matches

    candidates = list_detector_names()
    suggestions = close_matches(name, candidates)
    hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    return ValueError(
        f"unknown detector {name!r}{hint} (detectors are {DET_PREFIX}{NAME_HEAD}<backbone>{NAME_TAIL} for a zoo "
        f"network or one of {', '.join(TV_BACKBONES)}; list_models('{DET_PREFIX}*') shows all {len(candidates)})"
    )
