"""Neuron selectivity transfer (NST) over the intermediate stage pairs, as RepDistiller."""

from __future__ import annotations

import torch

from kdlab.losses import nst_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import reduce_stage_parts, require_probe, stage_pairs
from kdlab.methods.terms._params import choice

_REDUCTIONS = ("sum", "mean")


@register_term
class NSTTerm(LossTerm):
    """``nst``: MMD² (polynomial kernel, d = 2) of the L2-normalised channel patterns, per stage pair.

    ``stages="all"`` pairs the deepest ``min(n_s, n_t)`` stages of both networks
    (RepDistiller's ``feat[1:-1]`` for the CIFAR zoo; VGG needs ``[1, 2, 3, 4]``),
    a list of indices picks stages in both. Channel counts may differ; the larger
    map is pooled to the smaller one (:func:`kdlab.losses.nst_loss`). No trainable
    parts. ``reduction="sum"`` (default) sums the pairs as RepDistiller (weight 50,
    CE 1); ``"mean"`` averages them.
    """

    name = "nst"
    paper = "Huang & Wang, Like What You Like: Knowledge Distill via Neuron Selectivity Transfer, arXiv 2017"
    uses = frozenset({"stages"})

    def __init__(self, ctx: BuildContext, stages: object = "all", reduction: str = "sum") -> None:
        super().__init__(ctx)
        self.reduction = choice("reduction", reduction, _REDUCTIONS)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        self.pairs = stage_pairs(stages, student, teacher)

    def forward(self, step: StepContext) -> torch.Tensor | dict[str, torch.Tensor]:
        parts = {f"s{s}_t{t}": nst_loss(step.student.stages[s], step.teacher.stages[t]) for s, t in self.pairs}
        return reduce_stage_parts(parts, self.reduction)

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, reduction={self.reduction}"
