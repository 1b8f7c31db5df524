"""Backbones with a feature pyramid: ``backbone(images) -> OrderedDict[str, Tensor]`` plus ``.out_channels``.

Zoo networks compute their stages in ``forward_backbone`` rather than as a
chain of child modules, so torchvision's IntermediateLayerGetter cannot cut
them; :class:`ZooStagesBody` runs ``forward_backbone`` and hands the chosen
stages to a stock FeaturePyramidNetwork (same ``.body`` / ``.fpn`` layout as
torchvision's BackboneWithFPN). torchvision ResNets use BackboneWithFPN itself.

Stride-1 first stages (CIFAR nets) need nothing special: MultiScaleRoIAlign
and the AnchorGenerator read each level's stride off the feature map sizes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from kdlab.models.detection.freezing import freeze_batchnorm, freeze_parameters, freeze_resnet_layers
from kdlab.models.detection.options import DetectorOptions
from kdlab.models.detection.weights import load_classifier_weights

#: the dry run that maps parameters to stages uses a canvas this large (every zoo net still has >= 1 px stages)
PROBE_SIZE = 64
#: torchvision's default for a ResNet that arrives with weights (of 5)
TV_DEFAULT_TRAINABLE = 3
FORBIDDEN_BACKBONE_KWARGS = ("num_classes", "checkpoint", "weights", "pretrained", "weights_backbone")


class ZooStagesBody(nn.Module):
    """The selected stages of a zoo network (``forward_backbone``), keyed ``"0"``, ``"1"``, ... shallow to deep.

    ``returned_stages`` counts from 1 like torchvision's ``returned_layers``.
    The network's classifier is removed (``reset_classifier(0)``); its
    head-only layers still run, because ``forward_backbone`` computes them,
    but are frozen so no parameter is left without a gradient.
    """

    def __init__(self, net: nn.Module, returned_stages: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.returned_stages = tuple(returned_stages)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stages, _, _ = self.net.forward_backbone(x)
        return OrderedDict((str(i), stages[s - 1]) for i, s in enumerate(self.returned_stages))


class ZooBackboneWithFPN(nn.Module):
    """``.body`` (:class:`ZooStagesBody`) followed by ``.fpn`` (FeaturePyramidNetwork + LastLevelMaxPool)."""

    def __init__(self, body: ZooStagesBody, in_channels_list: list[int], out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels_list, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn(self.body(x))


@dataclass
class BuiltBackbone:
    """A backbone and what the detector around it needs to know."""

    module: nn.Module
    #: FPN outputs: the returned stages plus the max-pool level
    num_levels: int
    #: names of the levels MultiScaleRoIAlign pools from (all but ``"pool"``)
    featmap_names: list[str]


def _check_backbone_kwargs(kwargs: dict[str, Any], what: str) -> None:
    bad = [k for k in kwargs if k in FORBIDDEN_BACKBONE_KWARGS]
    if bad:
        raise ValueError(
            f"backbone_kwargs for {what} must not set {', '.join(bad)}: the detector sets the classifier itself, "
            "weights come from backbone_checkpoint= (a local file) and nothing is downloaded"
        )


def stage_influence(net: nn.Module) -> tuple[list[set[int]], list[int]]:
    """For each stage of a zoo net: the ids of the parameters its output depends on; and the stage channels.

    One dry run on a blank 64-px probe in eval mode (running statistics stay
    untouched), one backward per stage. Dependencies follow the graph, not the
    values, so a blank probe is enough. A network built under
    ``torch.inference_mode()`` has no autograd at all (and can never train):
    every parameter then counts for every stage.
    """
    params = [p for p in net.parameters() if p.requires_grad]
    reference = next(net.parameters())
    trackable = not any(p.is_inference() for p in params)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(False), torch.set_grad_enabled(trackable):
            probe = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=reference.device, dtype=reference.dtype)
            stages, _, _ = net.forward_backbone(probe)
            if not trackable:
                return [{id(p) for p in params} for _ in stages], [int(s.shape[1]) for s in stages]
            influence = []
            for stage in stages:
                grads = torch.autograd.grad(stage.sum(), params, allow_unused=True, retain_graph=True)
                influence.append({id(p) for p, g in zip(params, grads) if g is not None})
    finally:
        net.train(was_training)
    return influence, [int(s.shape[1]) for s in stages]


def _resolve_stages(requested: tuple[int, ...] | None, count: int, what: str) -> tuple[int, ...]:
    stages = requested if requested is not None else tuple(range(1, count + 1))
    if min(stages) < 1 or max(stages) > count:
        raise ValueError(
            f"returned_stages for {what} must lie in [1, {count}] (1 = shallowest stage), got {list(stages)}"
        )
    return stages


def build_zoo_backbone(name: str, options: DetectorOptions, *, unsafe: bool = False) -> BuiltBackbone:
    """A zoo network (weights from ``backbone_checkpoint``) wrapped as selected stages -> FPN.

    ``trainable_backbone_layers`` counts stages from the deepest (the stem
    trains with stage 1); default: every stage trains.
    """
    from kdlab.models.registry import create_model

    kwargs = dict(options.backbone_kwargs)
    _check_backbone_kwargs(kwargs, name)
    net = create_model(name, num_classes=0, **kwargs)  # no classifier: a detector has its own head
    if not callable(getattr(net, "forward_backbone", None)):
        raise ValueError(f"zoo model {name!r} has no forward_backbone(x) stages and cannot be a detection backbone")
    if options.backbone_checkpoint is not None:
        load_classifier_weights(net, options.backbone_checkpoint, f"zoo {name!r}", unsafe=unsafe)
    influence, channels = stage_influence(net)
    stages = _resolve_stages(options.returned_stages, len(channels), f"zoo {name!r}")

    trainable = len(channels) if options.trainable_backbone_layers is None else options.trainable_backbone_layers
    if trainable > len(channels):
        raise ValueError(
            f"trainable_backbone_layers for zoo {name!r} must be in [0, {len(channels)}] (its stage count), "
            f"got {trainable}"
        )
    used = set().union(*(influence[s - 1] for s in stages))
    frozen = set(influence[len(channels) - trainable - 1]) if trainable < len(channels) else set()
    freeze_parameters(p for p in net.parameters() if id(p) not in used or id(p) in frozen)

    if batchnorm_frozen(options):
        freeze_batchnorm(net)
    body = ZooStagesBody(net, stages)
    module = ZooBackboneWithFPN(body, [channels[s - 1] for s in stages], options.fpn_channels)
    return BuiltBackbone(module, len(stages) + 1, [str(i) for i in range(len(stages))])


def batchnorm_frozen(options: DetectorOptions) -> bool:
    """torchvision's rule unless forced: BatchNorm is frozen iff the backbone arrives with trained weights."""
    if options.freeze_batchnorm is not None:
        return options.freeze_batchnorm
    return options.backbone_checkpoint is not None


def default_trainable_layers(options: DetectorOptions, maximum: int) -> int:
    """torchvision's default (3) with backbone weights, else everything; an explicit value always wins."""
    if options.trainable_backbone_layers is not None:
        return options.trainable_backbone_layers
    return TV_DEFAULT_TRAINABLE if options.backbone_checkpoint is not None else maximum


def build_torchvision_resnet_backbone(name: str, options: DetectorOptions, *, unsafe: bool = False) -> BuiltBackbone:
    """A torchvision ResNet with weights from ``backbone_checkpoint``, cut by BackboneWithFPN like torchvision's."""
    import torchvision.models

    kwargs = dict(options.backbone_kwargs)
    _check_backbone_kwargs(kwargs, name)
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    if options.backbone_checkpoint is not None:
        load_classifier_weights(net, options.backbone_checkpoint, f"torchvision {name!r}", unsafe=unsafe)
    if batchnorm_frozen(options):
        freeze_batchnorm(net)
    freeze_resnet_layers(net, default_trainable_layers(options, 5))
    stages = _resolve_stages(options.returned_stages or (1, 2, 3, 4), 4, f"torchvision {name!r}")
    stage2 = net.inplanes // 8  # layer1's width, as torchvision computes it
    module = BackboneWithFPN(
        net,
        return_layers={f"layer{k}": str(v) for v, k in enumerate(stages)},
        in_channels_list=[stage2 * 2 ** (k - 1) for k in stages],
        out_channels=options.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    return BuiltBackbone(module, len(stages) + 1, [str(i) for i in range(len(stages))])
