"""Decoupled KD (DKD) as a term, with the official linear warm-up of its weight."""

from __future__ import annotations

import math

import torch

from kdlab.losses import dkd_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import non_negative, positive


@register_term
class DKDTerm(LossTerm):
    """``dkd``: ``alpha * TCKD + beta * NCKD`` at temperature T, times T^2.

    Warm-up as in the official code (mdistiller): the term's weight is multiplied by
    ``min(e / warmup, 1)`` during 1-based epoch e, i.e. 1/warmup in the first epoch
    and the full weight from epoch ``warmup`` on. ``warmup: 0`` disables it (the
    official ImageNet recipes use ``WARMUP: 1``, which is the full weight from the
    first step as well).
    """

    name = "dkd"
    paper = "Zhao et al., Decoupled Knowledge Distillation, CVPR 2022"
    needs_labels = True
    cacheable = True

    def __init__(
        self,
        ctx: BuildContext,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup: float = 20.0,
    ) -> None:
        super().__init__(ctx)
        self.alpha = non_negative("alpha", alpha)
        self.beta = non_negative("beta", beta)
        self.temperature = positive("temperature", temperature)
        self.warmup = non_negative("warmup", warmup)

    def weight_scale(self, progress: float) -> float:
        if self.warmup <= 0:
            return 1.0
        epoch = math.floor(progress) + 1  # the official loop counts epochs from 1
        return min(epoch / self.warmup, 1.0)

    def forward(self, step: StepContext) -> torch.Tensor:
        return dkd_loss(
            step.student.logits,
            step.teacher.logits,
            step.targets,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
        )
