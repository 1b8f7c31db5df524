"""MobileNet v1 for ImageNet (Howard et al., 2017), the student of the ResNet50 -> MobileNetV1 recipe.

A stride-2 3x3 conv to 32 channels and 13 depthwise-separable units
(3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU), 1024-d pooled
embedding, one linear layer: ~4.2M parameters at 1000 classes, 224 px input
(any size works thanks to adaptive pooling). Stages end where the resolution
halves next (strides 4, 8, 16, 32: 128-256-512-1024 channels), matching the
layer1..4 of an ImageNet ResNet teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import PreactBlock, check_in_chans, conv_bn_relu, init_weights, run_stage
from kdlab.models.registry import register_model

#: (out_channels, stride) of the separable units, grouped as stem tail + 4 stages
STEM_UNITS = [(64, 1)]
STAGE_UNITS = [
    [(128, 2), (128, 1)],
    [(256, 2), (256, 1)],
    [(512, 2)] + [(512, 1)] * 5,
    [(1024, 2), (1024, 1)],
]


def conv_bn_relu_depthwise(channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class SeparableUnit(PreactBlock):
    """3x3 depthwise (strided) + BN + ReLU, then 1x1 pointwise + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = conv_bn_relu_depthwise(in_channels, stride)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        preact = self.bn(self.pointwise(self.depthwise(x)))
        return F.relu(preact), preact


class MobileNetV1ImageNet(KDModel):
    """``stem`` (conv + first separable unit), ``layer1..4``, pooled, ``fc``."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        check_in_chans(in_chans)
        stage_channels = [units[-1][0] for units in STAGE_UNITS]
        super().__init__(num_classes, embedding_dim=stage_channels[-1], stage_channels=stage_channels)
        stem: list[nn.Module] = [conv_bn_relu(in_chans, 32, 3, stride=2)]
        in_channels = 32
        for out_channels, stride in STEM_UNITS:
            stem.append(SeparableUnit(in_channels, out_channels, stride))
            in_channels = out_channels
        self.stem = nn.Sequential(*stem)
        stages = []
        for units in STAGE_UNITS:
            layer = []
            for out_channels, stride in units:
                layer.append(SeparableUnit(in_channels, out_channels, stride))
                in_channels = out_channels
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        x = self.stem(x)
        stages, preacts = [], []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x, preact = run_stage(layer, x)
            stages.append(x)
            preacts.append(preact)
        return stages, preacts, x


@register_model
def MobileNetV1(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV1ImageNet:  # noqa: N802 - the literature's name
    """ImageNet MobileNet v1 (default 1000 classes; ``create_model`` passes its own ``num_classes``)."""
    return MobileNetV1ImageNet(num_classes=num_classes, in_chans=in_chans)
