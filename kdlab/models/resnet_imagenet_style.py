"""ImageNet-style bottleneck ResNet-50 adapted to CIFAR (the KD literature's ``ResNet50``).

The ImageNet stage layout (3-4-6-3 bottleneck blocks, 64-128-256-512 inner
width, expansion 4) with a CIFAR stem: one stride-1 3x3 conv and no max-pool,
so a 32x32 image reaches the last stage at 4x4. Stride sits on the 3x3 conv of
a stage's first block; shortcuts are 1x1 conv + BatchNorm projections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import PreactBlock, check_in_chans, conv1x1, conv3x3, init_weights, run_stage
from kdlab.models.registry import register_model


class Bottleneck(PreactBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4; ReLU after the residual sum."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        preact = self.bn3(self.conv3(out)) + self.shortcut(x)
        return F.relu(preact), preact


class BottleneckResNet(KDModel):
    """``conv1``/``bn1`` stem, ``layer1..4`` of :class:`Bottleneck`, pooled, ``fc``."""

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int = 100, in_chans: int = 3) -> None:
        check_in_chans(in_chans)
        widths = (64, 128, 256, 512)
        super().__init__(
            num_classes,
            embedding_dim=widths[-1] * Bottleneck.expansion,
            stage_channels=[w * Bottleneck.expansion for w in widths],
        )
        self.conv1 = conv3x3(in_chans, 64)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        stages = []
        for index, (count, width) in enumerate(zip(blocks, widths)):
            layer = []
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                layer.append(Bottleneck(in_channels, width, stride))
                in_channels = width * Bottleneck.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preacts = [], []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x, preact = run_stage(layer, x)
            stages.append(x)
            preacts.append(preact)
        return stages, preacts, x


@register_model
def ResNet50(num_classes: int = 100, in_chans: int = 3) -> BottleneckResNet:  # noqa: N802 - the literature's name
    return BottleneckResNet((3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans)
