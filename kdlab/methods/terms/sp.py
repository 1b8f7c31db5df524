"""Similarity-preserving KD (SP) on one stage (or the embedding)."""

from __future__ import annotations

import torch

from kdlab.losses import sp_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import EMBEDDING, resolve_for_both


@register_term
class SPTerm(LossTerm):
    """``sp``: match the row-normalised batch similarity matrices of one feature.

    ``stage`` (default -1, the deepest stage, as RepDistiller's ``feat[-2]``) is a
    stage index resolved in each network, or ``embedding``. Only the B x B
    similarities are compared, so shapes may differ and no adapter is needed.
    RepDistiller weights it 3000.
    """

    name = "sp"
    paper = "Tung & Mori, Similarity-Preserving Knowledge Distillation, ICCV 2019"
    uses = frozenset({"stages", "embedding"})

    def __init__(self, ctx: BuildContext, stage: object = -1) -> None:
        super().__init__(ctx)
        self.student_feature, self.teacher_feature = resolve_for_both(
            stage, ctx.student_probe, ctx.teacher_probe, "stage", self.name
        )
        self.uses = frozenset({self.student_feature.uses})
        self.cacheable = stage == EMBEDDING

    def forward(self, step: StepContext) -> torch.Tensor:
        return sp_loss(self.student_feature.take(step.student), self.teacher_feature.take(step.teacher))

    def extra_repr(self) -> str:
        return f"student={self.student_feature}, teacher={self.teacher_feature}"
