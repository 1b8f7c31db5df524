"""Hinton's KD as a term, optionally on standardised logits (KD+LS)."""

from __future__ import annotations

from typing import Optional

import torch

from kdlab.losses import kd_loss, logit_standardize
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import boolean
from kdlab.methods.terms._temperature import current_temperature, temperature_setting, with_temperature_log


@register_term
class KDTerm(LossTerm):
    """``kd``: KL(softmax(t/T) || softmax(s/T)) * T^2 on the logits.

    ``logit_standardization: true`` Z-scores both logits over the classes first
    (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024; unbiased
    std as the official code, see :func:`kdlab.losses.logit_standardize`); T is then the
    paper's base temperature (2 in the official CIFAR-100 recipe).

    ``temperature: learnable``: CTKD (Li et al., AAAI 2023), a learned global temperature
    behind a gradient-reversal layer with the official cosine curriculum
    (:class:`kdlab.methods.modules.learnable_temperature.LearnableTemperature`); logged
    as ``kd/temperature``. ``ctkd_epochs`` (default 10, the official CIFAR-100 value; 5
    in its ImageNet script): epochs over which the reversal strength rises from 0 to 1.
    """

    name = "kd"
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015"
    cacheable = True

    def __init__(
        self,
        ctx: BuildContext,
        temperature: float | str = 4.0,
        logit_standardization: bool = False,
        ctkd_epochs: Optional[int] = None,
    ) -> None:
        super().__init__(ctx)
        self.temperature, self.learnable_temperature = temperature_setting(temperature, ctkd_epochs)
        self.logit_standardization = boolean("logit_standardization", logit_standardization)

    def forward(self, step: StepContext) -> torch.Tensor | dict[str, torch.Tensor]:
        student, teacher = step.student.logits, step.teacher.logits
        if self.logit_standardization:
            student, teacher = logit_standardize(student), logit_standardize(teacher)
        temperature = current_temperature(self.temperature, self.learnable_temperature, step.epoch)
        return with_temperature_log(kd_loss(student, teacher, temperature=temperature), temperature)
