"""OFD: connectors on the student's pre-ReLU stages, partial L2 to the teacher's margin-ReLU'd stages."""

from __future__ import annotations

import math

import torch
from torch import nn

from kdlab.losses import OFDLoss, ofd_margin
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import describe_stages, require_probe, stage_pairs
from kdlab.methods.terms._params import fraction
from kdlab.models.preact_bn import preact_batchnorms


def connector(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """OFD's connector: 1x1 convolution (no bias) + BatchNorm, initialised as the official code.

    Convolution weights ~ N(0, 2 / (k * k * out_channels)), BatchNorm weight 1 and bias 0.
    """
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / teacher_channels))
    bn = nn.BatchNorm2d(teacher_channels)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    return nn.Sequential(conv, bn)


@register_term
class OFDTerm(LossTerm):
    """``ofd``: sum over stage pairs of ``2^-(n-1-i) * d(connector_i(s_i), max(t_i, m_i))``.

    ``s_i`` / ``t_i``: the student's / teacher's pre-ReLU stage maps
    (``preact_stages``); ``stages="all"`` pairs the deepest ``min(n_s, n_t)``
    stages of both (mdistiller's ``preact_feats[1:]``, aligned at the deepest, as
    ``_align_list``). The connectors (1x1 conv + BN per pair) belong to the term.
    The margins ``m_i`` come, once, at build time, from the affine parameters of
    the teacher's BatchNorm before each of those ReLUs
    (:func:`kdlab.models.preact_bn.preact_batchnorms`, the official
    ``get_bn_before_relu``) and are kept as buffers. Where a teacher map is larger
    than the student's it is average-pooled to the student's size (mdistiller).
    ``min_cdf``: the margin's fallback threshold (official 0.001). Official
    weights: 1e-3 on CIFAR-100, 1e-4 on ImageNet (CE 1).
    """

    name = "ofd"
    paper = "Heo et al., A Comprehensive Overhaul of Feature Distillation, ICCV 2019"
    uses = frozenset({"preact_stages"})

    def __init__(self, ctx: BuildContext, stages: object = "all", min_cdf: float = 1e-3) -> None:
        super().__init__(ctx)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        if ctx.teacher is None:
            raise ValueError("ofd: needs the teacher network (its BatchNorm layers give the margins)")
        self.min_cdf = fraction("min_cdf", min_cdf)
        self.pairs = stage_pairs(stages, student, teacher)
        teacher_network = getattr(ctx.teacher, "model", ctx.teacher)
        if getattr(teacher_network, "is_token_model", False):
            raise ValueError(
                f"ofd: the teacher {getattr(teacher_network, 'name', type(teacher_network).__name__)} is a vision "
                f"transformer (stages {describe_stages(teacher)}; student {describe_stages(student)}): OFD's margins "
                "come from the BatchNorm before each teacher ReLU, which it has none of; use a CNN teacher (any "
                "student works, a ViT too) or a term for heterogeneous pairs (ofa, fitnet, at)"
            )
        bns = preact_batchnorms(ctx.teacher)
        if len(bns) != len(teacher.preact_stages):
            raise ValueError(
                f"ofd: the teacher has {len(teacher.preact_stages)} pre-activation stages but "
                f"{len(bns)} BatchNorm layers before them"
            )
        margins = []
        for s, t in self.pairs:
            t_channels = int(teacher.preact_stages[t].shape[1])
            if bns[t].num_features != t_channels:
                raise ValueError(
                    f"ofd: teacher stage {t} has {t_channels} channels but its BatchNorm {bns[t].num_features}"
                )
            margins.append(ofd_margin(bns[t].weight.detach().float(), bns[t].bias.detach().float(), self.min_cdf))
        self.loss = OFDLoss(margins)
        self.connectors = nn.ModuleList(
            connector(int(student.preact_stages[s].shape[1]), int(teacher.preact_stages[t].shape[1]))
            for s, t in self.pairs
        )

    def forward(self, step: StepContext) -> torch.Tensor:
        students = [conn(step.student.preact_stages[s]) for conn, (s, _) in zip(self.connectors, self.pairs)]
        teachers = [step.teacher.preact_stages[t] for _, t in self.pairs]
        return self.loss(students, teachers)

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, min_cdf={self.min_cdf}"
