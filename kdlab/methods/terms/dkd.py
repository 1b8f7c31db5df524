"""Decoupled KD (DKD) as a term, with the official linear warm-up of its weight (optionally DKD+LS)."""

from __future__ import annotations

import math
from typing import Optional

import torch

from kdlab.losses import dkd_loss, logit_standardize
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import boolean, non_negative
from kdlab.methods.terms._temperature import current_temperature, temperature_setting, with_temperature_log


@register_term
class DKDTerm(LossTerm):
    """``dkd``: ``alpha * TCKD + beta * NCKD`` at temperature T, times T^2.

    Warm-up as in the official code (mdistiller): the term's weight is multiplied by
    ``min(e / warmup, 1)`` during 1-based epoch e, i.e. 1/warmup in the first epoch
    and the full weight from epoch ``warmup`` on. ``warmup: 0`` disables it (the
    official ImageNet recipes use ``WARMUP: 1``, which is the full weight from the
    first step as well).

    ``logit_standardization: true`` Z-scores both logits over the classes first (Sun et
    al., CVPR 2024, see :func:`kdlab.losses.logit_standardize`); the official DKD+LS
    recipe multiplies alpha and beta by 9 and uses T = 2.

    ``temperature: learnable``: CTKD's learned temperature (see the ``kd`` term), logged as
    ``dkd/temperature`` (``ctkd_epochs`` as there).
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
        temperature: float | str = 4.0,
        warmup: float = 20.0,
        logit_standardization: bool = False,
        ctkd_epochs: Optional[int] = None,
    ) -> None:
        super().__init__(ctx)
        self.alpha = non_negative("alpha", alpha)
        self.beta = non_negative("beta", beta)
        self.temperature, self.learnable_temperature = temperature_setting(temperature, ctkd_epochs)
        self.warmup = non_negative("warmup", warmup)
        self.logit_standardization = boolean("logit_standardization", logit_standardization)

    def weight_scale(self, progress: float) -> float:
        if self.warmup <= 0:
            return 1.0
        epoch = math.floor(progress) + 1  # the official loop counts epochs from 1
        return min(epoch / self.warmup, 1.0)

    def forward(self, step: StepContext) -> torch.Tensor | dict[str, torch.Tensor]:
        student, teacher = step.student.logits, step.teacher.logits
        if self.logit_standardization:
            student, teacher = logit_standardize(student), logit_standardize(teacher)
        temperature = current_temperature(self.temperature, self.learnable_temperature, step.epoch)
        loss = dkd_loss(student, teacher, step.targets, alpha=self.alpha, beta=self.beta, temperature=temperature)
        return with_temperature_log(loss, temperature)
