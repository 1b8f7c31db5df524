"""CIFAR ResNets (He et al., 2016, "Deep Residual Learning", Sec. 4.2) as used in KD papers.

Three stages of ``n = (depth - 2) / 6`` basic blocks at 16-32-64 channels
(``resnet8x4``/``resnet32x4``: 4x wider, 64-128-256 after a 32-channel first
conv), global average pooling, one linear layer.

Shortcuts when the shape changes:
- ``shortcut="B"`` (default, RepDistiller/CRD): 1x1 conv + BatchNorm projection;
  the parameter counts of the KD literature's tables are of this variant.
- ``shortcut="A"`` (the paper's CIFAR option): parameter-free, subsample by the
  stride and zero-pad the new channels; it loads the akamaster
  pytorch_resnet_cifar10 checkpoints (whose classifier ``linear`` is renamed to
  ``fc`` at load by :mod:`kdlab.models.checkpoint`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import PreactBlock, check_in_chans, conv1x1, conv3x3, init_weights, run_stage
from kdlab.models.registry import register_model

SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with the extra channels zero-padded evenly on both sides."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"zero-pad shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.pad_front = (out_channels - in_channels) // 2
        self.pad_back = out_channels - in_channels - self.pad_front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


def make_shortcut(in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(PreactBlock):
    """Two 3x3 convs with BatchNorm; ReLU after the residual sum (the pre-activation is the sum)."""

    def __init__(self, in_channels: int, channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = make_shortcut(in_channels, channels, stride, shortcut)

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(preact), preact


class CifarResNet(KDModel):
    """``conv1``/``bn1`` stem, ``layer1..3`` of :class:`BasicBlock`, pooled, ``fc``."""

    def __init__(
        self,
        depth: int,
        widths: tuple[int, int, int, int] = (16, 16, 32, 64),
        num_classes: int = 100,
        in_chans: int = 3,
        shortcut: str = "B",
    ) -> None:
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        check_in_chans(in_chans)
        stem, *stage_widths = widths
        super().__init__(num_classes, embedding_dim=stage_widths[-1], stage_channels=stage_widths)
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = conv3x3(in_chans, stem)
        self.bn1 = nn.BatchNorm2d(stem)
        in_channels = stem
        stages = []
        for index, channels in enumerate(stage_widths):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, channels, stride if block_index == 0 else 1, shortcut))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preacts = [], []
        for layer in (self.layer1, self.layer2, self.layer3):
            x, preact = run_stage(layer, x)
            stages.append(x)
            preacts.append(preact)
        return stages, preacts, x


_WIDE = (32, 64, 128, 256)


@register_model
def resnet8(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(8, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet14(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(14, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet20(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(20, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet32(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(32, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet44(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(44, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet56(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(56, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet110(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(110, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet8x4(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(8, _WIDE, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)


@register_model
def resnet32x4(num_classes: int = 100, in_chans: int = 3, shortcut: str = "B") -> CifarResNet:
    return CifarResNet(32, _WIDE, num_classes=num_classes, in_chans=in_chans, shortcut=shortcut)
