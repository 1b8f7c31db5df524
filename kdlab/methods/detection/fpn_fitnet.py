"""``fpn_fitnet``: FitNets hints on every FPN level."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.losses import fitnet_loss
from kdlab.methods.base import register_term
from kdlab.methods.detection.base import DetectionBuildContext, DetectionStep, DetectionTerm


def paired_levels(ctx: DetectionBuildContext, term: str) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """(student (C, H, W), teacher (C, H, W)) per FPN level; the level counts must agree."""
    teacher = ctx.teacher_fpn or []
    if len(ctx.student_fpn) != len(teacher):
        raise ValueError(
            f"{term} pairs FPN levels one to one, but the student has {len(ctx.student_fpn)} levels "
            f"{[s[1:] for s in ctx.student_fpn]} and the teacher {len(teacher)} {[t[1:] for t in teacher]}"
        )
    return list(zip(ctx.student_fpn, teacher))


def match_size(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` resized to ``like``'s spatial size (nearest), when they differ."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


@register_term
class FPNFitNetTerm(DetectionTerm):
    """``fpn_fitnet``: per FPN level, a 1x1 conv adapter of the student's map, MSE to the teacher's; summed.

    sum_l mean((A_l(s_l) - t_l)^2), the adapter output resized (nearest) to the
    teacher's map where the backbones' strides differ.
    """

    name = "fpn_fitnet"
    paper = "Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015 (on FPN levels)"
    needs_teacher = True
    uses = frozenset({"fpn"})

    def __init__(self, ctx: DetectionBuildContext) -> None:
        super().__init__(ctx)
        self.adapters = nn.ModuleList(
            nn.Conv2d(s[0], t[0], kernel_size=1, bias=False) for s, t in paired_levels(ctx, self.name)
        )

    def forward(self, step: DetectionStep) -> torch.Tensor:
        student = list(step.student_fpn.values())
        teacher = list(step.teacher_fpn.values())  # type: ignore[union-attr]
        total = student[0].new_zeros((), dtype=torch.float32)
        for adapter, s, t in zip(self.adapters, student, teacher):
            total = total + fitnet_loss(match_size(adapter(s), t), t)
        return total
