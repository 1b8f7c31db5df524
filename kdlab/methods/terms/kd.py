"""Hinton's KD as a term."""

from __future__ import annotations

import torch

from kdlab.losses import kd_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import positive


@register_term
class KDTerm(LossTerm):
    """``kd``: KL(softmax(t/T) || softmax(s/T)) * T^2 on the logits."""

    name = "kd"
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015"
    cacheable = True

    def __init__(self, ctx: BuildContext, temperature: float = 4.0) -> None:
        super().__init__(ctx)
        self.temperature = positive("temperature", temperature)

    def forward(self, step: StepContext) -> torch.Tensor:
        return kd_loss(step.student.logits, step.teacher.logits, temperature=self.temperature)
