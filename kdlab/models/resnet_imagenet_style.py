"""ImageNet-style ResNets adapted to CIFAR (the KD literature's ``ResNet50`` and ``ResNet18``).

The ImageNet stage layout (64-128-256-512 inner width) with a CIFAR stem: one
stride-1 3x3 conv and no max-pool, so a 32x32 image reaches the last stage at
4x4. Stride sits on the first 3x3 conv of a stage's first block; shortcuts are
1x1 conv + BatchNorm projections where the shape changes. This is the network of
RepDistiller's and mdistiller's ``models/resnetv2.py``:

- ``ResNet50``: 3-4-6-3 bottleneck blocks (expansion 4), 2048-d embedding;
  a CIFAR-100 teacher of RepDistiller/CRD, DKD and CKD.
- ``ResNet18``: 2-2-2-2 basic blocks (the CIFAR BasicBlock of
  :mod:`kdlab.models.resnet_cifar`), 512-d embedding, 11.2M parameters at 100
  classes; mdistiller's CIFAR student (and its Tiny-ImageNet teacher).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import PreactBlock, check_in_chans, conv1x1, conv3x3, init_weights, run_stage
from kdlab.models.registry import register_model
from kdlab.models.resnet_cifar import BasicBlock

WIDTHS = (64, 128, 256, 512)


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


def _basic_block(in_channels: int, width: int, stride: int) -> PreactBlock:
    """The projection-shortcut CIFAR BasicBlock: the same layers and names as resnetv2.py's BasicBlock."""
    return BasicBlock(in_channels, width, stride, shortcut="B")


BlockFactory = Callable[[int, int, int], PreactBlock]
#: per block kind: (constructor taking (in_channels, width, stride), output channels per unit of inner width)
BLOCKS: dict[str, tuple[BlockFactory, int]] = {
    "bottleneck": (Bottleneck, Bottleneck.expansion),
    "basic": (_basic_block, 1),
}


class ImageNetStyleResNet(KDModel):
    """``conv1``/``bn1`` stem, ``layer1..4`` of bottleneck or basic blocks, pooled, ``fc``."""

    def __init__(
        self, blocks: tuple[int, int, int, int], block: str = "bottleneck", num_classes: int = 100, in_chans: int = 3
    ) -> None:
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        check_in_chans(in_chans)
        make_block, expansion = BLOCKS[block]
        super().__init__(
            num_classes, embedding_dim=WIDTHS[-1] * expansion, stage_channels=[w * expansion for w in WIDTHS]
        )
        self.conv1 = conv3x3(in_chans, WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        in_channels = WIDTHS[0]
        stages = []
        for index, (count, width) in enumerate(zip(blocks, WIDTHS)):
            layer = []
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                layer.append(make_block(in_channels, width, stride))
                in_channels = width * expansion
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
def ResNet50(num_classes: int = 100, in_chans: int = 3) -> ImageNetStyleResNet:  # noqa: N802 - the literature's name
    return ImageNetStyleResNet((3, 4, 6, 3), "bottleneck", num_classes=num_classes, in_chans=in_chans)


@register_model
def ResNet18(num_classes: int = 100, in_chans: int = 3) -> ImageNetStyleResNet:  # noqa: N802 - the literature's name
    """mdistiller's CIFAR ResNet18 (``mdistiller/models/cifar/resnetv2.py``): 2-2-2-2 basic blocks, 32x32 stem."""
    return ImageNetStyleResNet((2, 2, 2, 2), "basic", num_classes=num_classes, in_chans=in_chans)
