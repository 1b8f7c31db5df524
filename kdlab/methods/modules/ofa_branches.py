"""OFA-KD's branches: small heads that project a student stage into the logit space.

Hao et al., "One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge
Distillation", NeurIPS 2023; the structure follows the official code (Hao840/OFAKD,
``distillers/ofa.py`` and ``distillers/utils.py``), written anew here.

- A **CNN student's** stage map goes through ``halvings`` depthwise-separable blocks
  (:class:`SepConv`, each halving the resolution and doubling the channels; the last one outputs
  ``width``), or, for a stage already at the deepest resolution, a 1x1 convolution to ``width``;
  then global average pooling and a linear classifier. ``width`` is the larger of the student's
  and the teacher's embedding widths (the official ``max(feature_dim_s, feature_dim_t)``).
- A **ViT student's** stage (its patch tokens) is merged 2x2 (:class:`PatchMerging`) until the grid
  is about 7x7 (``floor(log2(grid / 7))`` merges, the first one to the student's embedding width),
  then runs ``blocks`` pre-norm transformer blocks (4 heads, MLP ratio 4, GELU: timm's ``Block`` as
  the official code builds it, here :class:`torch.nn.TransformerEncoderLayer`), is pooled and
  classified. The official branch carries the stage's class token through the merging and reads it
  after the blocks; kdlab's ViT stages hold the patch tokens only (the prefix tokens are kept
  apart, :mod:`kdlab.models.timm_adapter`), so this branch averages the tokens instead (what the
  official code does for students without a class token, e.g. MLP-Mixer).

Weights are initialised as the official ``init_weights``: convolution weights Kaiming-normal (fan-out,
ReLU), BatchNorm 1/0, linear layers (the attention's q/k/v projection included) truncated normal
(std 0.02) with zero bias. One difference from timm's ``Block``: the q/k/v projection has a bias.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: the official ViT branch merges patches until the grid is this small ("finally there are 49 patches")
FINAL_PATCH_GRID = 7
#: attention heads of the official branch's transformer blocks
BRANCH_HEADS = 4


class SepConv(nn.Module):
    """Depthwise-separable block halving the resolution: (dw 3x3 s2, pw 1x1, BN, ReLU, dw 3x3, pw 1x1, BN, ReLU)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, in_channels, 1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, in_channels, 3, stride=1, padding=1, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchMerging(nn.Module):
    """Swin's patch merging on a token grid: each 2x2 neighbourhood concatenated, LayerNorm, linear (no bias)."""

    def __init__(self, grid: tuple[int, int], channels: int, out_channels: int, activation: bool) -> None:
        super().__init__()
        if grid[0] % 2 or grid[1] % 2:
            raise ValueError(f"PatchMerging: a {grid[0]}x{grid[1]} token grid cannot be merged 2x2 (odd size)")
        self.grid = grid
        self.norm = nn.LayerNorm(4 * channels)
        self.reduction = nn.Linear(4 * channels, out_channels, bias=False)
        self.act: nn.Module = nn.GELU() if activation else nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, channels = tokens.shape
        h, w = self.grid
        if count != h * w:
            raise ValueError(f"PatchMerging: expected {h}x{w} = {h * w} tokens, got {count}")
        x = tokens.view(batch, h, w, channels)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.act(self.reduction(self.norm(x.view(batch, -1, 4 * channels))))

    def extra_repr(self) -> str:
        return f"grid={self.grid}"


class ConvBranch(nn.Module):
    """A CNN student stage (B, C, H, W) -> (B, num_classes) logits (see the module docstring)."""

    def __init__(self, channels: int, halvings: int, width: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if halvings == 0:
            layers.append(nn.Conv2d(channels, width, 1))
        else:
            in_channels = channels
            for i in range(halvings):
                out_channels = width if i == halvings - 1 else in_channels * 2
                layers.append(SepConv(in_channels, out_channels))
                in_channels *= 2
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        self.halvings = halvings
        init_branch(self)

    def forward(self, stage: torch.Tensor) -> torch.Tensor:
        return self.body(stage)

    def extra_repr(self) -> str:
        return f"halvings={self.halvings}"


class TokenBranch(nn.Module):
    """A ViT student stage, its patch tokens as a map (B, D, h, w) -> (B, num_classes) logits."""

    def __init__(self, channels: int, grid: tuple[int, int], width: int, blocks: int, num_classes: int) -> None:
        super().__init__()
        merges = max(int(math.log2(min(grid) / FINAL_PATCH_GRID)), 0)
        mergers: list[nn.Module] = []
        size, in_channels = grid, channels
        for i in range(merges):
            # the official branch: the first merge projects to the embedding width with GELU, the last has none
            activation = i == 0 or i != merges - 1
            mergers.append(PatchMerging(size, in_channels, width, activation))
            size, in_channels = (size[0] // 2, size[1] // 2), width
        if in_channels != width:
            raise ValueError(
                f"TokenBranch: the stage has {in_channels} channels but the blocks run at width {width} and no "
                f"patch merging projects it (grid {grid[0]}x{grid[1]})"
            )
        if width % BRANCH_HEADS:
            raise ValueError(f"TokenBranch: width {width} must be divisible by {BRANCH_HEADS} attention heads")
        self.mergers = nn.Sequential(*mergers)
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(
                width, BRANCH_HEADS, dim_feedforward=4 * width, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True,
            )
            for _ in range(blocks)
        ])
        self.head = nn.Linear(width, num_classes)
        self.merges, self.depth = merges, blocks
        init_branch(self)

    def forward(self, stage: torch.Tensor) -> torch.Tensor:
        tokens = stage.flatten(2).transpose(1, 2)  # (B, h*w, D), row-major as the ViT's patch order
        tokens = self.blocks(self.mergers(tokens))
        return self.head(tokens.mean(dim=1))

    def extra_repr(self) -> str:
        return f"merges={self.merges}, blocks={self.depth}"


def init_branch(module: nn.Module) -> None:
    """The official ``init_weights`` over every submodule of a branch."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            # timm's Block projects q, k, v with one Linear, which the official init draws like the others
            nn.init.trunc_normal_(m.in_proj_weight, std=0.02)
            if m.in_proj_bias is not None:
                nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


__all__ = ["ConvBranch", "PatchMerging", "SepConv", "TokenBranch", "init_branch"]
