"""Correlation congruence (CC) on linear projections of the pooled embeddings, as RepDistiller."""

from __future__ import annotations

import torch
from torch import nn

from kdlab.losses import cc_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import EMBEDDING, embedding_inputs
from kdlab.methods.terms._params import positive_int


class LinearEmbed(nn.Module):
    """A linear projection of the flattened feature, no normalisation (RepDistiller's ``LinearEmbed``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1).to(self.linear.weight.dtype))


@register_term
class CCTerm(LossTerm):
    """``cc``: RepDistiller's correlation congruence between projected student and teacher embeddings.

    ``feature`` (default ``embedding``, RepDistiller's ``feat[-1]``; or a stage
    index, flattened) of each network goes through its own linear layer to
    ``feat_dim`` (128), without L2 normalisation; :func:`kdlab.losses.cc_loss`
    then averages ``<|d_i|, |d_{i+1}|>`` over consecutive samples. Both
    projections are trained, the teacher's too (the teacher's features carry no
    gradient, its projection does), as RepDistiller's ``trainable_list``.
    RepDistiller weights the term 0.02 next to CE 1. Needs batches of >= 2.
    """

    name = "cc"
    paper = "Peng et al., Correlation Congruence for Knowledge Distillation, ICCV 2019"
    uses = frozenset({"embedding", "stages"})

    def __init__(self, ctx: BuildContext, feat_dim: int = 128, feature: object = EMBEDDING) -> None:
        super().__init__(ctx)
        self.feat_dim = positive_int("feat_dim", feat_dim)
        student_dim, teacher_dim = embedding_inputs(self, feature, ctx)
        self.embed_student = LinearEmbed(student_dim, self.feat_dim)
        self.embed_teacher = LinearEmbed(teacher_dim, self.feat_dim)

    def forward(self, step: StepContext) -> torch.Tensor:
        student = self.embed_student(self.student_feature.take(step.student))
        teacher = self.embed_teacher(self.teacher_feature.take(step.teacher))
        return cc_loss(student, teacher)

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, student={self.student_feature}, teacher={self.teacher_feature}"
