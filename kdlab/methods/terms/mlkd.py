"""MLKD (multi-level logit distillation) as terms: ``mlkd`` and the strong view's cross-entropy ``ce_strong``.

Both read MLKD's two views per image (``data.views=weak_strong``, set by the
builder when one of them is configured): view 0 the normal crop + flip, view 1
the same image with RandAugment + Cutout. The official total
``CE_w * (CE(weak) + CE(strong)) + KD_w * mlkd`` is three terms::

    - {name: ce, weight: 0.1}          # the weak view (view 0, what every other term sees)
    - {name: ce_strong, weight: 0.1}   # the strong view
    - {name: mlkd, weight: 0.9}
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from kdlab.losses import mlkd_loss_parts
from kdlab.losses.mlkd import DEFAULT_EXTRA_TEMPERATURES
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import boolean, positive
from kdlab.methods.terms._temperature import current_temperature, temperature_setting

#: the data views both terms read
WEAK_STRONG = "weak_strong"


def split_weak_strong(logits: torch.Tensor, views: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) weak-view and strong-view rows of image-major (B * 2, K) logits."""
    if views != 2:
        raise ValueError(
            f"{what} needs MLKD's two views per image (data.views={WEAK_STRONG}), got {views} view(s) per image"
        )
    return logits[0::2], logits[1::2]


def _temperatures(param: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{param}={value!r} must be a list of numbers > 0, e.g. [3, 5, 2, 6]")
    return tuple(positive(param, v) for v in value)


@register_term
class MLKDTerm(LossTerm):
    """``mlkd``: MLKD's instance (KD), class (CC) and batch (BC) alignment at several temperatures.

    Jin et al., CVPR 2023; see :func:`kdlab.losses.mlkd_loss` for the formula and the official
    code's quirks kept (batch-reduced losses times the masks' kept fractions, the weak view in
    the last two "strong" KD terms). Logged parts: ``mlkd/kd_weak``, ``mlkd/kd_strong``,
    ``mlkd/cc``, ``mlkd/bc``. The student's CE on the strong view is the ``ce_strong`` term.

    Args:
        temperature: the base temperature T (official 4), or ``learnable``: CTKD's learned
            temperature (see the ``kd`` term), logged as ``mlkd/temperature``. It replaces T
            wherever the official code uses its configured temperature (the KD, CC and BC sums);
            the extra temperatures stay fixed.
        ctkd_epochs: CTKD's curriculum length (``temperature: learnable`` only; default 10).
        extra_temperatures: the further temperatures, official ``[3, 5, 2, 6]``.
        logit_standardization: Z-score both logits inside the KD parts (MLKD+LS, Sun et al.,
            CVPR 2024; their CIFAR-100 recipe: weight 9, T = 2).
    """

    name = "mlkd"
    paper = "Jin et al., Multi-Level Logit Distillation, CVPR 2023"
    multiview = WEAK_STRONG
    # it reads the teacher's logits of both views only: a cache holding both views replaces the live teacher
    cacheable = True

    def __init__(
        self,
        ctx: BuildContext,
        temperature: float | str = 4.0,
        ctkd_epochs: Optional[int] = None,
        extra_temperatures: Sequence[float] = DEFAULT_EXTRA_TEMPERATURES,
        logit_standardization: bool = False,
    ) -> None:
        super().__init__(ctx)
        self.temperature, self.learnable_temperature = temperature_setting(temperature, ctkd_epochs)
        self.extra_temperatures = _temperatures("extra_temperatures", extra_temperatures)
        self.logit_standardization = boolean("logit_standardization", logit_standardization)

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        student_weak, student_strong = split_weak_strong(step.student.logits, step.views, "mlkd")
        teacher_weak, teacher_strong = split_weak_strong(step.teacher.logits, step.views, "mlkd")
        temperature = current_temperature(self.temperature, self.learnable_temperature, step.epoch)
        parts = mlkd_loss_parts(
            student_weak,
            teacher_weak,
            student_strong,
            teacher_strong,
            temperature=temperature,
            extra_temperatures=self.extra_temperatures,
            logit_standardization=self.logit_standardization,
        )
        if isinstance(temperature, torch.Tensor):
            parts["temperature"] = temperature.detach().float()
        return parts


@register_term
class StrongViewCrossEntropyTerm(LossTerm):
    """``ce_strong``: cross-entropy of the student's logits on the strong view (MLKD's second CE).

    The official MLKD loss has ``CE_w * (CE(weak) + CE(strong))``; the ``ce`` term gives the weak
    one (view 0), this term the strong one, each with its own weight (0.1 in the recipes).
    """

    name = "ce_strong"
    paper = "Jin et al., Multi-Level Logit Distillation, CVPR 2023 (CE on the strong view)"
    needs_teacher = False
    needs_labels = True
    multiview = WEAK_STRONG

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)

    def forward(self, step: StepContext) -> torch.Tensor:
        _, strong = split_weak_strong(step.student.logits, step.views, "ce_strong")
        return F.cross_entropy(strong.float(), step.targets)
