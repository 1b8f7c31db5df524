"""Hinton's KD as a term, optionally on standardised logits (KD+LS)."""

from __future__ import annotations

import torch

from kdlab.losses import kd_loss, logit_standardize
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import boolean, positive


@register_term
class KDTerm(LossTerm):
    """``kd``: KL(softmax(t/T) || softmax(s/T)) * T^2 on the logits.

    ``logit_standardization: true`` Z-scores both logits over the classes first
    (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024; unbiased
    std as the official code, see :func:`kdlab.losses.logit_standardize`); T is then the
    paper's base temperature (2 in the official CIFAR-100 recipe).
    """

    name = "kd"
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015"
    cacheable = True

    def __init__(self, ctx: BuildContext, temperature: float = 4.0, logit_standardization: bool = False) -> None:
        super().__init__(ctx)
        self.temperature = positive("temperature", temperature)
        self.logit_standardization = boolean("logit_standardization", logit_standardization)

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = step.student.logits, step.teacher.logits
        if self.logit_standardization:
            student, teacher = logit_standardize(student), logit_standardize(teacher)
        return kd_loss(student, teacher, temperature=self.temperature)
