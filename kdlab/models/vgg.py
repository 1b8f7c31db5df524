"""VGG with BatchNorm for CIFAR (Simonyan & Zisserman, 2015), as in the KD literature.

Five blocks of 3x3 conv (with bias) + BN + ReLU; each block's last ReLU is
applied outside it so its pre-activation map is available. Blocks 0-2 are
followed by 2x2 max-pooling; the pooling after block 3 is skipped for inputs
smaller than 64 px, so a 32x32 image keeps a 4x4 map in block 4 (the CIFAR
layout of RepDistiller/CRD). Pooled 512-d embedding, one linear layer.

``vgg8`` is the KD literature's shallow variant (one conv per block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import check_in_chans, conv3x3, init_weights
from kdlab.models.registry import register_model

LAYOUTS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}

#: the pooling after block 3 runs only for inputs at least this tall
LAST_POOL_MIN_SIZE = 64


def _block(in_channels: int, widths: list[int]) -> nn.Sequential:
    """conv-BN-ReLU per width, without the final ReLU (applied by the network, after reading the preact)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [conv3x3(in_channels, width, bias=True), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(KDModel):
    """``block0..4`` with max-pooling between them, pooled, ``fc``."""

    def __init__(self, layout: list[list[int]], num_classes: int = 100, in_chans: int = 3) -> None:
        check_in_chans(in_chans)
        widths = [block[-1] for block in layout]
        super().__init__(num_classes, embedding_dim=widths[-1], stage_channels=widths)
        blocks = []
        in_channels = in_chans
        for block in layout:
            blocks.append(_block(in_channels, block))
            in_channels = block[-1]
        self.block0, self.block1, self.block2, self.block3, self.block4 = blocks
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        pool_before_last = x.shape[-2] >= LAST_POOL_MIN_SIZE
        stages, preacts = [], []
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        for index, block in enumerate(blocks):
            if index in (1, 2, 3) or (index == 4 and pool_before_last):
                x = F.max_pool2d(x, 2)
            preact = block(x)
            x = F.relu(preact)
            stages.append(x)
            preacts.append(preact)
        return stages, preacts, x


def _vgg(name: str, num_classes: int, in_chans: int) -> VGG:
    return VGG(LAYOUTS[name], num_classes=num_classes, in_chans=in_chans)


@register_model
def vgg8(num_classes: int = 100, in_chans: int = 3) -> VGG:
    return _vgg("vgg8", num_classes, in_chans)


@register_model
def vgg11(num_classes: int = 100, in_chans: int = 3) -> VGG:
    return _vgg("vgg11", num_classes, in_chans)


@register_model
def vgg13(num_classes: int = 100, in_chans: int = 3) -> VGG:
    return _vgg("vgg13", num_classes, in_chans)


@register_model
def vgg16(num_classes: int = 100, in_chans: int = 3) -> VGG:
    return _vgg("vgg16", num_classes, in_chans)


@register_model
def vgg19(num_classes: int = 100, in_chans: int = 3) -> VGG:
    return _vgg("vgg19", num_classes, in_chans)
