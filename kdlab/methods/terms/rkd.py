"""Relational KD (RKD): distance- and angle-wise relations of a batch."""

from __future__ import annotations

import torch

from kdlab.losses import rkd_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import EMBEDDING, resolve_for_both
from kdlab.methods.terms._params import non_negative


@register_term
class RKDTerm(LossTerm):
    """``rkd``: ``distance_weight * L_distance + angle_weight * L_angle`` on one feature.

    ``feature`` is ``embedding`` (default, RepDistiller's ``feat[-1]``) or a stage
    index (the map is flattened per sample). Widths may differ: only relations
    within the batch are compared. RepDistiller uses weights 25 / 50 and a term
    weight of 1.
    """

    name = "rkd"
    paper = "Park et al., Relational Knowledge Distillation, CVPR 2019"
    uses = frozenset({"embedding", "stages"})

    def __init__(
        self,
        ctx: BuildContext,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        feature: object = EMBEDDING,
    ) -> None:
        super().__init__(ctx)
        self.distance_weight = non_negative("distance_weight", distance_weight)
        self.angle_weight = non_negative("angle_weight", angle_weight)
        self.student_feature, self.teacher_feature = resolve_for_both(
            feature, ctx.student_probe, ctx.teacher_probe, "feature", self.name
        )
        self.uses = frozenset({self.student_feature.uses})
        self.cacheable = feature == EMBEDDING

    def forward(self, step: StepContext) -> torch.Tensor:
        return rkd_loss(
            self.student_feature.take(step.student).flatten(1),
            self.teacher_feature.take(step.teacher).flatten(1),
            distance_weight=self.distance_weight,
            angle_weight=self.angle_weight,
        )

    def extra_repr(self) -> str:
        return (
            f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}, "
            f"student={self.student_feature}, teacher={self.teacher_feature}"
        )
