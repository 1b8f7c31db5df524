"""Which submodules of a library network are its "stages".

- torchvision ResNet/ResNeXt/Wide-ResNet: ``layer1..layer4``; the pre-activation
  of a stage is the input of its last block's final ReLU.
- torchvision Swin: ``features.1/3/5/7`` (the stages between patch mergings), whose
  maps are channels-last (B, H, W, C) and are permuted to (B, C, H, W).
- anything else (MobileNet v2/v3, EfficientNet, ConvNeXt, VGG, RegNet, ...):
  found by a dry run: among the candidate submodules (the children of a
  ``features`` Sequential when the network has one, else the submodules two
  levels deep) keep, for each resolution at strides 4 to 32, the last one that
  outputs a (B, C, H, W) map at that resolution, i.e. the map just before the
  network downsamples again. These families have no activation after a stage
  that the plan could separate, so their pre-activations equal the stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from kdlab.models.capture import ActivationRecorder

#: strides at which a map counts as a stage (the usual feature-pyramid levels)
MIN_STRIDE, MAX_STRIDE = 4, 32


@dataclass(frozen=True)
class StagePlan:
    """Names of the stage modules and, per stage, a module whose *input* is the pre-activation (or None)."""

    stage_modules: list[str]
    preact_inputs: list[str | None]
    #: the stage modules output (B, H, W, C) maps, to be permuted to (B, C, H, W)
    channels_last: bool = False

    def __post_init__(self) -> None:
        if len(self.stage_modules) != len(self.preact_inputs):
            raise ValueError(
                f"StagePlan needs one preact entry per stage: {len(self.stage_modules)} stages, "
                f"{len(self.preact_inputs)} preact entries"
            )


def resnet_plan(model: nn.Module) -> StagePlan:
    """``layer1..4``; preact = input of the last block's ``relu`` (its last call is after the residual sum)."""
    stages = [f"layer{i}" for i in range(1, 5)]
    preacts: list[str | None] = []
    for name in stages:
        layer = cast(nn.Sequential, model.get_submodule(name))
        last = len(layer) - 1
        has_relu = isinstance(getattr(layer[last], "relu", None), nn.ReLU)
        preacts.append(f"{name}.{last}.relu" if has_relu else None)
    return StagePlan(stages, preacts)


def swin_plan(model: nn.Module) -> StagePlan:
    """The odd children of ``features`` (even ones are the patch embedding and patch mergings)."""
    features = cast(nn.Sequential, model.get_submodule("features"))
    stages = [f"features.{i}" for i in range(1, len(features), 2)]
    return StagePlan(stages, [None] * len(stages), channels_last=True)


def candidate_modules(model: nn.Module, exclude: str | None) -> list[str]:
    """Children of ``features`` if it is a Sequential, else every submodule one or two levels deep."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        return [f"features.{name}" for name, _ in features.named_children()]
    names = []
    for name, _ in model.named_modules():
        if not name or name.count(".") > 1:
            continue
        if exclude and (name == exclude or name.startswith(exclude + ".")):
            continue
        names.append(name)
    return names


def search_plan(model: nn.Module, probe: torch.Tensor, exclude: str | None = None) -> StagePlan:
    """Stages found by a dry run of ``model`` on ``probe`` (see the module docstring)."""
    candidates = candidate_modules(model, exclude)
    recorder = ActivationRecorder(model, output_of=candidates)
    with recorder.recording():
        model(probe)
    height = probe.shape[-2]
    last_at: dict[tuple[int, int], str] = {}
    for name, output in recorder.outputs.items():  # insertion order = order in which modules finished
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            continue
        stride = height / output.shape[-2]
        if MIN_STRIDE * 0.9 <= stride <= MAX_STRIDE * 1.1:
            size = (int(output.shape[-2]), int(output.shape[-1]))
            last_at[size] = name  # a later module at the same size replaces the earlier
    ordered = sorted(last_at.items(), key=lambda item: -item[0][0])  # shallow (large) to deep (small)
    stages = [name for _, name in ordered]
    return StagePlan(stages, [None] * len(stages))
