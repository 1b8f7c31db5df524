"""Attention transfer (AT) over one or several stage pairs."""

from __future__ import annotations

import torch

from kdlab.losses import at_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import reduce_stage_parts, require_probe, stage_pairs
from kdlab.methods.terms._params import choice, positive

_REDUCTIONS = ("mean", "sum")


@register_term
class ATTerm(LossTerm):
    """``at``: squared distance of L2-normalised spatial attention maps, per stage pair.

    ``stages="all"`` pairs the deepest ``min(n_s, n_t)`` stages of both networks
    (RepDistiller's ``feat[1:-1]`` for the CIFAR zoo); a list of indices picks
    stages in both. ``reduction="mean"`` (default) averages the pairs, so the
    weight does not depend on how many stages a network has; RepDistiller *sums*
    them, which is ``reduction: sum`` (the CIFAR-100 recipes use that, with weight
    1000, to match its published numbers). Channel counts may differ (the map
    averages them away); spatial sizes may differ (the larger map is pooled).
    """

    name = "at"
    paper = "Zagoruyko & Komodakis, Paying More Attention to Attention, ICLR 2017"
    uses = frozenset({"stages"})

    def __init__(self, ctx: BuildContext, p: float = 2.0, stages: object = "all", reduction: str = "mean") -> None:
        super().__init__(ctx)
        self.p = positive("p", p)
        self.reduction = choice("reduction", reduction, _REDUCTIONS)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        self.pairs = stage_pairs(stages, student, teacher)

    def forward(self, step: StepContext) -> torch.Tensor | dict[str, torch.Tensor]:
        parts = {
            f"s{s}_t{t}": at_loss(step.student.stages[s], step.teacher.stages[t], p=self.p) for s, t in self.pairs
        }
        return reduce_stage_parts(parts, self.reduction)

    def extra_repr(self) -> str:
        return f"p={self.p}, pairs={self.pairs}, reduction={self.reduction}"
