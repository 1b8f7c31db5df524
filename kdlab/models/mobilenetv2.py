"""MobileNetV2 for CIFAR (Sandler et al., 2018) as in the KD literature (``mobile_half``).

Width multiplier 0.5, expansion 6, the ImageNet block table with a stride-2
first conv; the last 1x1 conv keeps 1280 channels. Inverted residual blocks end
in a linear BatchNorm (no activation), so ``preact_stages`` equals ``stages``.
Stages are the outputs of block groups 1, 2, 4 and 6 (strides 2, 4, 8, 16),
the feature points RepDistiller uses.
"""

from __future__ import annotations

import torch
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import check_in_chans, conv_bn_relu, init_weights
from kdlab.models.registry import register_model

#: (expansion, channels, blocks, stride) per group; expansion ``None`` = the network's ``expansion``
BLOCK_TABLE: list[tuple[int | None, int, int, int]] = [
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
]
STAGE_GROUPS = (1, 2, 4, 6)


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise (strided) - 1x1 linear projection; identity residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2Cifar(KDModel):
    """``conv1``, ``blocks`` (7 groups), ``conv2`` (1x1 to 1280), pooled, ``fc``."""

    def __init__(
        self,
        num_classes: int = 100,
        in_chans: int = 3,
        width_mult: float = 0.5,
        expansion: int = 6,
        last_channels: int = 1280,
    ) -> None:
        check_in_chans(in_chans)
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        group_channels = [int(channels * width_mult) for _, channels, _, _ in BLOCK_TABLE]
        super().__init__(
            num_classes, embedding_dim=last_channels, stage_channels=[group_channels[i] for i in STAGE_GROUPS]
        )
        in_channels = int(32 * width_mult)
        self.conv1 = conv_bn_relu(in_chans, in_channels, 3, stride=2)
        groups = []
        for (group_expansion, _, count, stride), out_channels in zip(BLOCK_TABLE, group_channels):
            blocks = []
            for index in range(count):
                ratio = expansion if group_expansion is None else group_expansion
                blocks.append(InvertedResidual(in_channels, out_channels, stride if index == 0 else 1, ratio))
                in_channels = out_channels
            groups.append(nn.Sequential(*blocks))
        self.blocks = nn.ModuleList(groups)
        self.conv2 = conv_bn_relu(in_channels, last_channels, 1)
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        x = self.conv1(x)
        stages = []
        for index, group in enumerate(self.blocks):
            x = group(x)
            if index in STAGE_GROUPS:
                stages.append(x)
        return stages, list(stages), self.conv2(x)


@register_model
def MobileNetV2(num_classes: int = 100, in_chans: int = 3) -> MobileNetV2Cifar:  # noqa: N802 - the literature's name
    return MobileNetV2Cifar(num_classes=num_classes, in_chans=in_chans)
