"""The trainable extras of AB and FT, laid out as RepDistiller's ``models/util.py``.

- AB's connectors (``Connector``): per stage pair, the identity where the
  student map already has the teacher's channels and height, else FitNet's
  regressor without the final ReLU (``ConvReg(use_relu=False)``: conv + BN).
- FT's paraphraser (``Paraphraser``, rate k = 0.5, no BatchNorm): three 3x3
  convolutions C -> C -> kC -> kC, each followed by LeakyReLU(0.1), and a
  decoder of three 3x3 transposed convolutions back kC -> kC -> C -> C; its
  encoder output is the teacher's factor. FT's translator (``Translator``,
  BatchNorm on): the encoder's layout on the student map, C_s -> C_s -> kC_t ->
  kC_t, conv - BN - LeakyReLU(0.1) each. ``kC`` is ``int(C * k)``.

Where a layer has no BatchNorm an ``nn.Identity`` keeps its place, so the
state_dict indices are RepDistiller's (encoder.0, .3, .6; its placeholder is an
empty ``nn.Sequential``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from kdlab.methods.terms._adapters import ConvRegressor

LEAKY_SLOPE = 0.1


def factor_channels(channels: int, rate: float) -> int:
    """``int(channels * rate)``, the factor's channels, or ValueError when that is 0."""
    out = int(channels * rate)
    if out < 1:
        raise ValueError(f"rate={rate}: int({channels} channels x rate) = {out}, the factor needs at least one channel")
    return out


def _unit(conv: nn.Module, channels: int, use_bn: bool) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels) if use_bn else nn.Identity(), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]


def _encoder(in_channels: int, out_channels: int, use_bn: bool) -> nn.Sequential:
    return nn.Sequential(
        *_unit(nn.Conv2d(in_channels, in_channels, 3, 1, 1), in_channels, use_bn),
        *_unit(nn.Conv2d(in_channels, out_channels, 3, 1, 1), out_channels, use_bn),
        *_unit(nn.Conv2d(out_channels, out_channels, 3, 1, 1), out_channels, use_bn),
    )


class Paraphraser(nn.Module):
    """FT's teacher auto-encoder; ``forward`` returns ``(factor, reconstruction)``."""

    def __init__(self, channels: int, rate: float = 0.5, use_bn: bool = False) -> None:
        super().__init__()
        factor = factor_channels(channels, rate)
        self.channels, self.factor_channels = channels, factor
        self.encoder = _encoder(channels, factor, use_bn)
        self.decoder = nn.Sequential(
            *_unit(nn.ConvTranspose2d(factor, factor, 3, 1, 1), factor, use_bn),
            *_unit(nn.ConvTranspose2d(factor, channels, 3, 1, 1), channels, use_bn),
            *_unit(nn.ConvTranspose2d(channels, channels, 3, 1, 1), channels, use_bn),
        )

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.encoder(feature)
        return factor, self.decoder(factor)

    def encode(self, feature: torch.Tensor) -> torch.Tensor:
        return self.encoder(feature)


class FrozenParaphraser(Paraphraser):
    """A trained paraphraser: no gradients, always in eval mode (RepDistiller's main stage: ``.eval()``)."""

    def __init__(self, channels: int, rate: float = 0.5) -> None:
        super().__init__(channels, rate)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenParaphraser":  # noqa: ARG002 - always frozen
        return super().train(False)

    def encode(self, feature: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().encode(feature)


class Translator(nn.Sequential):
    """FT's student module: the paraphraser encoder's layout from the student's channels, BatchNorm on."""

    def __init__(self, in_channels: int, out_channels: int, use_bn: bool = True) -> None:
        super().__init__(*_encoder(in_channels, out_channels, use_bn))


def ab_connectors(student_shapes: Sequence[Sequence[int]], teacher_shapes: Sequence[Sequence[int]]) -> nn.ModuleList:
    """One connector per pair of per-sample (C, H, W) shapes: identity if C and H match, else conv + BN."""
    connectors = []
    for s_shape, t_shape in zip(student_shapes, teacher_shapes):
        if s_shape[0] == t_shape[0] and s_shape[1] == t_shape[1]:
            connectors.append(nn.Identity())
        else:
            connectors.append(ConvRegressor(s_shape, t_shape, relu=False))
    return nn.ModuleList(connectors)
