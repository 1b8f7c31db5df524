"""ShuffleNet v1 for CIFAR (Zhang et al., 2018) as in the KD literature (``ShuffleV1``).

Groups g=3, stage widths 240-480-960 with 4-8-4 bottleneck units, a 1x1
24-channel first conv and no max-pool (32x32 input ends at 4x4). A stage's
first unit is strided and concatenates a 3x3 average-pooled shortcut; the
others add an identity shortcut. ReLU after the merge (the pre-activation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import PreactBlock, channel_shuffle, check_in_chans, conv1x1, conv3x3, init_weights, run_stage
from kdlab.models.registry import register_model

STEM_CHANNELS = 24


class ShuffleUnit(PreactBlock):
    """Grouped 1x1 - shuffle - 3x3 depthwise - grouped 1x1; concat (stride 2) or add (stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        mid = out_channels // 4
        # the stem has too few channels to split into groups (as in the paper)
        self.first_groups = 1 if in_channels == STEM_CHANNELS else groups
        self.conv1 = conv1x1(in_channels, mid, groups=self.first_groups)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = conv1x1(mid, out_channels, groups=groups)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            preact = torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        else:
            preact = out + x
        return F.relu(preact), preact


class ShuffleNetV1(KDModel):
    """``conv1``/``bn1`` stem, ``layer1..3`` of :class:`ShuffleUnit`, pooled, ``fc``."""

    def __init__(
        self,
        widths: tuple[int, int, int] = (240, 480, 960),
        units: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
        num_classes: int = 100,
        in_chans: int = 3,
    ) -> None:
        check_in_chans(in_chans)
        super().__init__(num_classes, embedding_dim=widths[-1], stage_channels=list(widths))
        self.conv1 = conv1x1(in_chans, STEM_CHANNELS)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        in_channels = STEM_CHANNELS
        stages = []
        for width, count in zip(widths, units):
            layer = []
            for index in range(count):
                # the strided unit concatenates its input, so its branch only makes the difference
                branch = width - in_channels if index == 0 else width
                layer.append(ShuffleUnit(in_channels, branch, 2 if index == 0 else 1, groups))
                in_channels = width
            stages.append(nn.Sequential(*layer))
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


@register_model
def ShuffleV1(num_classes: int = 100, in_chans: int = 3) -> ShuffleNetV1:  # noqa: N802 - the literature's name
    return ShuffleNetV1(num_classes=num_classes, in_chans=in_chans)
