"""FitNets hints: regress a student feature onto a teacher feature (one-stage, as in RepDistiller)."""

from __future__ import annotations

import torch
from torch import nn

from kdlab.losses import fitnet_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._adapters import ConvRegressor
from kdlab.methods.terms._features import EMBEDDING, require_probe, resolve_feature
from kdlab.methods.terms._params import choice

_REGRESSOR = ("auto", "always")


@register_term
class FitNetTerm(LossTerm):
    """``fitnet``: MSE between ``regressor(student[guided])`` and ``teacher[hint]``.

    ``hint`` (teacher) and ``guided`` (student) are stage indices, ``middle``
    (default: stage ``(n-1)//2``, RepDistiller's ``hint_layer=2`` for every zoo
    network) or ``embedding`` (both then). The regressor is a
    :class:`~kdlab.methods.terms._adapters.ConvRegressor` (conv + BN + ReLU, as
    RepDistiller's ``ConvReg``) for feature maps, a linear layer for embeddings.
    ``regressor="auto"`` creates it only when channels or spatial sizes differ;
    ``"always"`` creates it even for identical shapes (RepDistiller always does).
    The hint loss is trained jointly with CE from the first step (RepDistiller's
    protocol, weight 100), not in the paper's separate pre-training stage.
    """

    name = "fitnet"
    paper = "Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015"
    uses = frozenset({"stages", "embedding"})

    def __init__(
        self, ctx: BuildContext, hint: object = "middle", guided: object = "middle", regressor: str = "auto"
    ) -> None:
        super().__init__(ctx)
        choice("regressor", regressor, _REGRESSOR)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        self.student_feature = resolve_feature(guided, student, "guided", "student")
        self.teacher_feature = resolve_feature(hint, teacher, "hint", "teacher")
        if (self.student_feature.kind == EMBEDDING) != (self.teacher_feature.kind == EMBEDDING):
            raise ValueError(
                f"hint={hint!r} and guided={guided!r}: a stage can only be regressed onto a stage, "
                "and the embedding onto the embedding"
            )
        self.uses = frozenset({self.student_feature.uses})
        s_shape = tuple(self.student_feature.take(student).shape[1:])
        t_shape = tuple(self.teacher_feature.take(teacher).shape[1:])
        self.regressor: nn.Module = nn.Identity()
        if regressor == "always" or s_shape != t_shape:
            if self.student_feature.kind == EMBEDDING:
                self.regressor = nn.Linear(s_shape[0], t_shape[0])
            else:
                self.regressor = ConvRegressor(s_shape, t_shape)

    def forward(self, step: StepContext) -> torch.Tensor:
        student = self.regressor(self.student_feature.take(step.student))
        return fitnet_loss(student, self.teacher_feature.take(step.teacher))

    def extra_repr(self) -> str:
        return f"guided=student {self.student_feature}, hint=teacher {self.teacher_feature}"
