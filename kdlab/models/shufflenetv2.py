"""ShuffleNet v2 (1x) for CIFAR (Ma et al., 2018) as in the KD literature (``ShuffleV2``).

A 1x1 24-channel first conv, three stages (116-232-464 channels) each made of
a strided down-sampling unit and 3-7-3 basic units, a 1x1 conv to 1024,
pooling, one linear layer. A basic unit splits the channels in half, transforms
one half and concatenates, then shuffles; its pre-activation is the same
concatenation and shuffle before the branch's last ReLU, so
``relu(preact) == output`` channel by channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import PreactBlock, channel_shuffle, check_in_chans, conv1x1, conv3x3, init_weights, run_stage
from kdlab.models.registry import register_model

STEM_CHANNELS = 24


class BasicUnit(PreactBlock):
    """Keep half the channels, 1x1 - 3x3 depthwise - 1x1 on the other half, concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.keep = channels // 2
        branch = channels - self.keep
        self.conv1 = conv1x1(branch, branch)
        self.bn1 = nn.BatchNorm2d(branch)
        self.conv2 = conv3x3(branch, branch, groups=branch)
        self.bn2 = nn.BatchNorm2d(branch)
        self.conv3 = conv1x1(branch, branch)
        self.bn3 = nn.BatchNorm2d(branch)

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, branch = x[:, : self.keep], x[:, self.keep :]
        out = F.relu(self.bn1(self.conv1(branch)))
        out = self.bn2(self.conv2(out))
        branch_preact = self.bn3(self.conv3(out))
        preact = channel_shuffle(torch.cat([kept, branch_preact], 1), 2)
        out = channel_shuffle(torch.cat([kept, F.relu(branch_preact)], 1), 2)
        return out, preact


class DownUnit(nn.Module):
    """Two strided branches (depthwise-pointwise and pointwise-depthwise-pointwise), concat, shuffle."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1 = conv3x3(in_channels, in_channels, stride=2, groups=in_channels)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = conv1x1(in_channels, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = conv1x1(in_channels, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = conv3x3(mid, mid, stride=2, groups=mid)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = conv1x1(mid, mid)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(KDModel):
    """``conv1``/``bn1`` stem, ``layer1..3``, ``conv2``/``bn2`` to the embedding width, pooled, ``fc``."""

    def __init__(
        self,
        widths: tuple[int, int, int] = (116, 232, 464),
        units: tuple[int, int, int] = (3, 7, 3),
        last_channels: int = 1024,
        num_classes: int = 100,
        in_chans: int = 3,
    ) -> None:
        check_in_chans(in_chans)
        super().__init__(num_classes, embedding_dim=last_channels, stage_channels=list(widths))
        self.conv1 = conv1x1(in_chans, STEM_CHANNELS)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        in_channels = STEM_CHANNELS
        stages = []
        for width, count in zip(widths, units):
            stages.append(nn.Sequential(DownUnit(in_channels, width), *[BasicUnit(width) for _ in range(count)]))
            in_channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = conv1x1(in_channels, last_channels)
        self.bn2 = nn.BatchNorm2d(last_channels)
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preacts = [], []
        for layer in (self.layer1, self.layer2, self.layer3):
            x, preact = run_stage(layer, x)
            stages.append(x)
            preacts.append(preact)
        return stages, preacts, F.relu(self.bn2(self.conv2(x)))


@register_model
def ShuffleV2(num_classes: int = 100, in_chans: int = 3) -> ShuffleNetV2:  # noqa: N802 - the literature's name
    return ShuffleNetV2(num_classes=num_classes, in_chans=in_chans)
