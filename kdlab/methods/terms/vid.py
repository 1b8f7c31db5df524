"""Variational information distillation (VID) over the intermediate stage pairs, as RepDistiller."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.losses import vid_log_scale_init, vid_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import reduce_stage_parts, require_probe, stage_pairs
from kdlab.methods.terms._params import choice, positive, positive_int

_REDUCTIONS = ("sum", "mean")


def _common_size(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    return min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])


def _pool_to(feature: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.adaptive_avg_pool2d(feature, tuple(size))


class VIDRegressor(nn.Sequential):
    """The mean regressor of RepDistiller's ``VIDLoss``: 1x1 conv - ReLU - 1x1 conv - ReLU - 1x1 conv, no biases."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, kernel_size=1, bias=False),
        )


@register_term
class VIDTerm(LossTerm):
    """``vid``: Gaussian NLL of each teacher stage given a regression of the matching student stage.

    Per stage pair, the student map is average-pooled to the teacher's spatial size
    when it is larger (the teacher map to the student's when that is larger), then
    a :class:`VIDRegressor` (``mid_channels``: ``"teacher"`` = the teacher's channel
    count, RepDistiller's ``VIDLoss(s, t, t)``, or an integer) predicts the mean, and
    a learned per-channel variance ``softplus(log_scale) + eps`` (initialised to
    ``init_pred_var`` = 5) scores the teacher map (:func:`kdlab.losses.vid_loss`).
    ``stages="all"`` pairs the deepest ``min(n_s, n_t)`` stages (RepDistiller's
    ``feat[1:-1]`` for the CIFAR zoo; VGG needs ``[1, 2, 3, 4]``), a list picks
    stages. ``reduction="sum"`` (default) sums the pairs as RepDistiller
    (weight 1, CE 1); ``"mean"`` averages them.
    """

    name = "vid"
    paper = "Ahn et al., Variational Information Distillation for Knowledge Transfer, CVPR 2019"
    uses = frozenset({"stages"})

    def __init__(
        self,
        ctx: BuildContext,
        stages: object = "all",
        mid_channels: object = "teacher",
        init_pred_var: float = 5.0,
        eps: float = 1e-5,
        reduction: str = "sum",
    ) -> None:
        super().__init__(ctx)
        self.eps = positive("eps", eps)
        self.init_pred_var = positive("init_pred_var", init_pred_var)
        if not self.init_pred_var > self.eps:
            raise ValueError(f"init_pred_var={init_pred_var!r} must be larger than eps={eps!r}")
        self.reduction = choice("reduction", reduction, _REDUCTIONS)
        if mid_channels != "teacher":
            positive_int("mid_channels", mid_channels)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        self.pairs = stage_pairs(stages, student, teacher)
        init = vid_log_scale_init(self.init_pred_var, self.eps)
        regressors, log_scales = [], []
        for s, t in self.pairs:
            s_map, t_map = student.stages[s], teacher.stages[t]
            if s_map.ndim != 4 or t_map.ndim != 4:
                raise ValueError(
                    f"vid: stage pair (student {s}, teacher {t}) must be feature maps (B, C, H, W), got "
                    f"{tuple(s_map.shape)} and {tuple(t_map.shape)}"
                )
            s_c, t_c = int(s_map.shape[1]), int(t_map.shape[1])
            mid = t_c if mid_channels == "teacher" else int(mid_channels)  # type: ignore[call-overload]
            regressors.append(VIDRegressor(s_c, mid, t_c))
            log_scales.append(nn.Parameter(torch.full((t_c,), init)))
        self.regressors = nn.ModuleList(regressors)
        self.log_scales = nn.ParameterList(log_scales)

    def forward(self, step: StepContext) -> torch.Tensor | dict[str, torch.Tensor]:
        parts = {}
        for (s, t), regressor, log_scale in zip(self.pairs, self.regressors, self.log_scales):
            student, teacher = step.student.stages[s], step.teacher.stages[t]
            size = _common_size(student, teacher)
            mean = regressor(_pool_to(student, size))
            parts[f"s{s}_t{t}"] = vid_loss(mean, _pool_to(teacher, size), log_scale, eps=self.eps)
        return reduce_stage_parts(parts, self.reduction)

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, init_pred_var={self.init_pred_var}, eps={self.eps}, reduction={self.reduction}"
