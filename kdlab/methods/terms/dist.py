"""DIST (inter- and intra-class correlation of the softmaxes) as a term."""

from __future__ import annotations

import torch

from kdlab.losses import dist_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import non_negative, positive


@register_term
class DISTTerm(LossTerm):
    """``dist``: T^2 (beta (1 - mean row correlation) + gamma (1 - mean column correlation)).

    Pearson correlations of softmax(s/T) and softmax(t/T), per sample (inter-class) and per
    class across the batch (intra-class); see :func:`kdlab.losses.dist_loss`. The official
    recipes: CE 1 + DIST 2, beta = gamma = 1, T = 4 on CIFAR-100 and T = 1 on ImageNet.
    The intra-class term is taken over the batch this process sees (per GPU under DDP, as the
    official code, which gathers nothing).
    """

    name = "dist"
    paper = "Huang et al., Knowledge Distillation from A Stronger Teacher, NeurIPS 2022"
    cacheable = True

    def __init__(self, ctx: BuildContext, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__(ctx)
        self.beta = non_negative("beta", beta)
        self.gamma = non_negative("gamma", gamma)
        self.temperature = positive("temperature", temperature)

    def forward(self, step: StepContext) -> torch.Tensor:
        return dist_loss(
            step.student.logits, step.teacher.logits, beta=self.beta, gamma=self.gamma, temperature=self.temperature
        )
