"""Probabilistic knowledge transfer (PKT) on one feature."""

from __future__ import annotations

import torch

from kdlab.losses import pkt_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import EMBEDDING, resolve_for_both


@register_term
class PKTTerm(LossTerm):
    """``pkt``: KL between the cosine-kernel conditional distributions over the batch.

    ``feature`` is ``embedding`` (default, RepDistiller's ``feat[-1]``) or a stage
    index (flattened per sample). Widths may differ. RepDistiller weights it 30000.
    """

    name = "pkt"
    paper = "Passalis & Tefas, Learning Deep Representations with Probabilistic Knowledge Transfer, ECCV 2018"
    uses = frozenset({"embedding", "stages"})

    def __init__(self, ctx: BuildContext, feature: object = EMBEDDING) -> None:
        super().__init__(ctx)
        self.student_feature, self.teacher_feature = resolve_for_both(
            feature, ctx.student_probe, ctx.teacher_probe, "feature", self.name
        )
        self.uses = frozenset({self.student_feature.uses})
        self.cacheable = feature == EMBEDDING

    def forward(self, step: StepContext) -> torch.Tensor:
        return pkt_loss(
            self.student_feature.take(step.student).flatten(1), self.teacher_feature.take(step.teacher).flatten(1)
        )

    def extra_repr(self) -> str:
        return f"student={self.student_feature}, teacher={self.teacher_feature}"
