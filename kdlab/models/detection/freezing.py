"""Which backbone weights train: FrozenBatchNorm2d and torchvision's ``trainable_backbone_layers``.

Detection batches are small (a few images), so a backbone that arrives with
trained weights keeps its BatchNorm statistics frozen, as torchvision does
with ``FrozenBatchNorm2d``. The network is always built with plain BatchNorm
and converted after its weights are loaded, so any classification file (with
or without ``num_batches_tracked``) loads the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

#: torchvision's ResNet units, deepest first (``trainable_backbone_layers`` counts them from the top)
RESNET_UNITS = ("layer4", "layer3", "layer2", "layer1", "conv1")


def _frozen_copy(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot freeze a BatchNorm2d without running statistics (track_running_stats=False)")
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    with torch.no_grad():
        frozen.weight.copy_(bn.weight if bn.weight is not None else torch.ones_like(frozen.weight))
        frozen.bias.copy_(bn.bias if bn.bias is not None else torch.zeros_like(frozen.bias))
        frozen.running_mean.copy_(bn.running_mean)
        frozen.running_var.copy_(bn.running_var)
    return frozen.to(device=bn.running_mean.device, dtype=bn.running_mean.dtype)


def freeze_batchnorm(module: nn.Module) -> int:
    """Replace every ``BatchNorm2d`` below ``module`` (in place) by a FrozenBatchNorm2d with its statistics.

    Returns how many were replaced.
    """
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _frozen_copy(child))
            count += 1
        else:
            count += freeze_batchnorm(child)
    return count


def _check_range(trainable: int, maximum: int, what: str) -> None:
    if not 0 <= trainable <= maximum:
        raise ValueError(f"trainable_backbone_layers for {what} must be in [0, {maximum}], got {trainable}")


def freeze_resnet_layers(body: nn.Module, trainable: int) -> None:
    """torchvision's semantics on a ResNet (or its FPN body): train the ``trainable`` deepest units.

    5 = everything; 4 = layer1..4 and conv1 is frozen with bn1; 0 = nothing.
    """
    _check_range(trainable, len(RESNET_UNITS), "a ResNet")
    keep = RESNET_UNITS[:trainable] + (("bn1",) if trainable == len(RESNET_UNITS) else ())
    for name, parameter in body.named_parameters():
        if not name.startswith(keep):
            parameter.requires_grad_(False)


def mobilenet_stage_count(features: nn.Module) -> int:
    """How many stages torchvision's MobileNet extractor counts (the range of ``trainable_backbone_layers``)."""
    return len(_mobilenet_stage_starts(list(features.children())))


def _mobilenet_stage_starts(blocks: list[nn.Module]) -> list[int]:
    # a stage starts at the stem, at every block marked _is_cn (stride change) and at the last block
    return [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)] + [len(blocks) - 1]


def freeze_mobilenet_layers(features: nn.Module, trainable: int) -> None:
    """torchvision's semantics on MobileNet ``features``: the ``trainable`` deepest stages train."""
    blocks = list(features.children())
    starts = _mobilenet_stage_starts(blocks)
    _check_range(trainable, len(starts), "MobileNetV3")
    freeze_before = len(blocks) if trainable == 0 else starts[len(starts) - trainable]
    for block in blocks[:freeze_before]:
        block.requires_grad_(False)


def freeze_parameters(parameters: Iterable[nn.Parameter]) -> None:
    for parameter in parameters:
        parameter.requires_grad_(False)
