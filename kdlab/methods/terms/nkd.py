"""Normalized KD (NKD) as a term."""

from __future__ import annotations

import torch

from kdlab.losses import nkd_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import non_negative, positive


@register_term
class NKDTerm(LossTerm):
    """``nkd``: -t_y log s_y + gamma T^2 CE(softmax_{k != y}(t/T), softmax_{k != y}(s/T)).

    The target part uses the teacher's target probability at T = 1; the non-target part
    the softmaxes over the K - 1 non-target logits at T (see :func:`kdlab.losses.nkd_loss`).
    The official ImageNet recipe: CE 1 + NKD 1 with T = 1, gamma = 1.5.
    """

    name = "nkd"
    paper = ("Yang et al., From Knowledge Distillation to Self-Knowledge Distillation: A Unified Approach "
             "with Normalized Loss and Customized Soft Labels, ICCV 2023")
    needs_labels = True
    cacheable = True

    def __init__(self, ctx: BuildContext, temperature: float = 1.0, gamma: float = 1.5) -> None:
        super().__init__(ctx)
        self.temperature = positive("temperature", temperature)
        self.gamma = non_negative("gamma", gamma)

    def forward(self, step: StepContext) -> torch.Tensor:
        return nkd_loss(
            step.student.logits, step.teacher.logits, step.targets, temperature=self.temperature, gamma=self.gamma
        )
