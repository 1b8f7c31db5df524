"""Wide ResNets (Zagoruyko & Komodakis, 2016) for CIFAR: ``wrn_<depth>_<widen>``.

Pre-activation blocks (BN-ReLU-conv twice), three stages of
``n = (depth - 4) / 6`` blocks at 16k-32k-64k channels, a final BN-ReLU,
pooling, one linear layer; 1x1 conv shortcuts where the shape changes.

Stage outputs: in a pre-activation network a stage's output is the raw residual
sum, and its activation happens inside the *next* stage's first block (or the
final BN-ReLU). kdlab's stage feature is that activation ``relu(bn(x))`` and its
pre-activation feature ``bn(x)``; both are taken from the one forward pass by
handing the activation to the next block. The pre-activation features are
RepDistiller's ``preact=True`` features (and mdistiller's ``preact_feats``); its
default features (``preact=False``, mdistiller's ``feats``) are the raw sums ``x``
themselves, which kdlab does not expose (``stages`` must equal
``relu(preact_stages)`` for every zoo network).

The layers, their order and the logits are those of RepDistiller's
``models/wrn.py`` (whose checkpoints load: :mod:`kdlab.models.literature_keys`).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.features import KDModel
from kdlab.models.layers import check_in_chans, conv1x1, conv3x3, init_weights
from kdlab.models.registry import register_model


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus identity or a 1x1 conv on the activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.drop_rate = drop_rate
        self.equal_in_out = in_channels == out_channels and stride == 1
        self.shortcut = None if self.equal_in_out else conv1x1(in_channels, out_channels, stride)

    def forward_activated(self, x: torch.Tensor, activated: torch.Tensor) -> torch.Tensor:
        """The block given ``activated = relu(bn1(x))`` computed by the caller."""
        out = F.relu(self.bn2(self.conv1(activated)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        residual = x if self.shortcut is None else self.shortcut(activated)
        return out + residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(x, F.relu(self.bn1(x)))


class WideResNet(KDModel):
    """``conv1``, ``block1..3`` of :class:`WideBlock`, final ``bn``, pooled, ``fc``."""

    def __init__(
        self, depth: int, widen: int, num_classes: int = 100, in_chans: int = 3, drop_rate: float = 0.0
    ) -> None:
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1, got {depth}")
        if widen < 1:
            raise ValueError(f"WRN widen factor must be >= 1, got {widen}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        check_in_chans(in_chans)
        widths = [16 * widen, 32 * widen, 64 * widen]
        super().__init__(num_classes, embedding_dim=widths[-1], stage_channels=widths)
        blocks_per_stage = (depth - 4) // 6
        self.conv1 = conv3x3(in_chans, 16)
        in_channels = 16
        stages = []
        for index, channels in enumerate(widths):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(blocks_per_stage):
                blocks.append(WideBlock(in_channels, channels, stride if block_index == 0 else 1, drop_rate))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[-1])
        init_weights(self)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        raw = self.block1(self.conv1(x))
        stages, preacts = [], []
        for next_stage in (self.block2, self.block3):
            first, *rest = cast(list[WideBlock], list(next_stage))
            preact = first.bn1(raw)
            activated = F.relu(preact)
            stages.append(activated)
            preacts.append(preact)
            raw = first.forward_activated(raw, activated)
            for block in rest:
                raw = block(raw)
        preact = self.bn(raw)
        activated = F.relu(preact)
        stages.append(activated)
        preacts.append(preact)
        return stages, preacts, activated


def _wrn(depth: int, widen: int, num_classes: int, in_chans: int, drop_rate: float) -> WideResNet:
    return WideResNet(depth, widen, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)


@register_model
def wrn_16_1(num_classes: int = 100, in_chans: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return _wrn(16, 1, num_classes, in_chans, drop_rate)


@register_model
def wrn_16_2(num_classes: int = 100, in_chans: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return _wrn(16, 2, num_classes, in_chans, drop_rate)


@register_model
def wrn_40_1(num_classes: int = 100, in_chans: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return _wrn(40, 1, num_classes, in_chans, drop_rate)


@register_model
def wrn_40_2(num_classes: int = 100, in_chans: int = 3, drop_rate: float = 0.0) -> WideResNet:
    return _wrn(40, 2, num_classes, in_chans, drop_rate)
