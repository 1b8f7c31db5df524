r"""Multi-level logit distillation (MLKD), the distillation part.

Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023. Official code:
``Jin-Ying/Multi-Level-Logit-Distillation`` (``KD_ours`` in
``mdistiller/distillers/KD_ours.py``; the same loss is ``MLKD`` in the
logit-standardization code, ``sunshangquan/logit-standardization-KD``,
``mdistiller/distillers/MLKD.py``).

Every image comes as a weak view (crop + flip) and a strong view (the same
image, RandAugment + Cutout); the teacher sees both. The student is aligned at
several temperatures :math:`\mathcal{T} = (T, T_1, \dots)` (official
:math:`(4, 3, 5, 2, 6)`) at three levels: instance (KD), class (CC) and batch
(BC). With :math:`P^{v}_T = \mathrm{softmax}(z^{v} / T)` row-wise ((B, K), view v)
and :math:`\mathrm{KD}_T(s, t) = T^2 \frac{1}{B}\sum_b \mathrm{KL}(p^t_b \| p^s_b)`:

.. math::

    \mathcal{L} = \underbrace{\sum_{T \in \mathcal{T}} \bar m\, \mathrm{KD}_T(\text{weak})}_{kd\_weak}
      + \underbrace{\sum_{T \in \mathcal{T}_{:3}} \mathrm{KD}_T(\text{strong})
                    + \sum_{T \in \mathcal{T}_{3:}} \mathrm{KD}_T(\text{weak})}_{kd\_strong}
      + \underbrace{\sum_{T \in \mathcal{T}} \bar c\,
            \frac{\| P^{t\top}_T P^t_T - P^{s\top}_T P^s_T \|_F^2}{K}}_{cc}
      + \underbrace{\sum_{T \in \mathcal{T}} \bar m\,
            \frac{\| P^t_T P^{t\top}_T - P^s_T P^{s\top}_T \|_F^2}{B}}_{bc}

(CC and BC on the weak view). The masks come from the teacher's weak-view
softmax at temperature 1, :math:`p = \mathrm{softmax}(z^{t,weak})`:

.. math::

    m_b = [\max_k p_{b,k} \le \mathrm{median}_b \max_k p_{b,k}], \qquad
    c_k = [\textstyle\sum_b p_{b,k} \le \mathrm{median}_k \sum_b p_{b,k}]

(medians as numpy's 50th percentile, linear interpolation; ties kept, ``<=``),
and :math:`\bar m`, :math:`\bar c` are their means: the official code reduces
each KD / CC / BC loss to a scalar over the batch *before* multiplying by the
mask and averaging, so a mask acts only as the fraction of rows (classes) it
keeps, not as a per-sample selection. Quirks of the official code kept here:

- the "strong" KD sum uses the strong view at the first three temperatures
  only and the *weak* view at the last two (``loss_kd_strong`` in the official
  code); with another number of temperatures, the first three go to the strong
  view and the rest to the weak one;
- the strong-view CC and BC sums (``loss_cc_strong``, ``loss_bc_strong``) are
  computed by the official code but not part of its total, so they are not
  computed here;
- the masks use neither the temperature nor the logit standardisation.

``logit_standardization``: Sun et al., "Logit Standardization in Knowledge
Distillation", CVPR 2024: both logits are Z-scored
(:func:`kdlab.losses.logit_standardize`) inside the KD parts only, as in that
paper's MLKD code; CC, BC and the masks keep the raw logits.

Shapes: four (B, K) logit tensors, B >= 1, K >= 2. The teacher logits are detached
(gradients reach the student, and a tensor temperature, only). The overall weight (the
official ``KD_WEIGHT``, 0.9 on CIFAR-100) is not applied here.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_positive, check_same_shape, shape_str, upcast
from kdlab.losses.kd import softened_kl
from kdlab.losses.logit_standardization import logit_standardize

#: the official code's temperatures after the base one: (T, 3, 5, 2, 6)
DEFAULT_EXTRA_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)
#: how many of the temperatures the strong view's KD uses (the rest use the weak view)
STRONG_VIEW_TEMPERATURES = 3

Temperature = Union[float, Tensor]


def mlkd_masks(teacher_logits_weak: Tensor) -> tuple[Tensor, Tensor]:
    """The sample mask (B,) and the class mask (K,) from the teacher's weak-view softmax (T = 1).

    ``max_k p <= median over the batch`` and ``sum_b p <= median over the classes``, medians
    with linear interpolation (``torch.quantile``, which equals numpy's default percentile).
    """
    with torch.no_grad():
        probabilities = torch.softmax(teacher_logits_weak.detach(), dim=1)
        confidence = probabilities.max(dim=1).values
        class_confidence = probabilities.sum(dim=0)
        sample_mask = confidence <= torch.quantile(confidence, 0.5)
        class_mask = class_confidence <= torch.quantile(class_confidence, 0.5)
    return sample_mask, class_mask


def _kd(student: Tensor, teacher: Tensor, temperature: Temperature) -> Tensor:
    return softened_kl(student, teacher, temperature).mean() * temperature**2


def _class_correlation(student: Tensor, teacher: Tensor, temperature: Temperature) -> Tensor:
    p_student = torch.softmax(student / temperature, dim=1)
    p_teacher = torch.softmax(teacher / temperature, dim=1)
    gap = p_teacher.t() @ p_teacher - p_student.t() @ p_student
    return gap.pow(2).sum() / student.shape[1]


def _batch_correlation(student: Tensor, teacher: Tensor, temperature: Temperature) -> Tensor:
    p_student = torch.softmax(student / temperature, dim=1)
    p_teacher = torch.softmax(teacher / temperature, dim=1)
    gap = p_teacher @ p_teacher.t() - p_student @ p_student.t()
    return gap.pow(2).sum() / student.shape[0]


def _check(
    fn: str,
    logits: dict[str, Tensor],
    temperature: Temperature,
    extra_temperatures: Sequence[float],
) -> tuple[Temperature, tuple[float, ...]]:
    """The checked temperatures: the base one (a 1-element tensor as a 0-d one) and the extra ones as floats."""
    names = list(logits)
    for name in names:
        check_ndim(fn, name, logits[name], 2, "(batch, classes)")
    for name in names[1:]:
        check_same_shape(fn, names[0], logits[names[0]], name, logits[name])
    first = logits[names[0]]
    check_min_batch(fn, names[0], first, 1)
    if first.shape[1] < 2:
        raise ValueError(f"{fn}: needs at least 2 classes, {names[0]} has shape {shape_str(first)}")
    if isinstance(temperature, Tensor):
        # a learned temperature (CTKD) is positive by construction; reading it would stall the device
        if temperature.numel() != 1:
            raise ValueError(f"{fn}: temperature must be a number or a 1-element tensor, got shape {shape_str(temperature)}")
        temperature = temperature.reshape(())
    else:
        check_positive(fn, "temperature", temperature)
    if isinstance(extra_temperatures, (str, bytes)) or not isinstance(extra_temperatures, Sequence):
        raise ValueError(f"{fn}: extra_temperatures must be a sequence of numbers, got {extra_temperatures!r}")
    extras = tuple(float(t) for t in extra_temperatures)
    for value in extras:
        check_positive(fn, "extra_temperatures", value)
    return temperature, extras


def mlkd_loss_parts(
    student_logits_weak: Tensor,
    teacher_logits_weak: Tensor,
    student_logits_strong: Tensor,
    teacher_logits_strong: Tensor,
    temperature: Temperature = 4.0,
    extra_temperatures: Sequence[float] = DEFAULT_EXTRA_TEMPERATURES,
    logit_standardization: bool = False,
) -> dict[str, Tensor]:
    """MLKD's four sums: ``kd_weak``, ``kd_strong``, ``cc``, ``bc`` and their total ``loss``.

    Arguments as :func:`mlkd_loss`. Every entry is a scalar tensor (float32 for half/bf16 inputs).
    """
    fn = "mlkd_loss"
    temperature, extras = _check(
        fn,
        {
            "student_logits_weak": student_logits_weak,
            "teacher_logits_weak": teacher_logits_weak,
            "student_logits_strong": student_logits_strong,
            "teacher_logits_strong": teacher_logits_strong,
        },
        temperature,
        extra_temperatures,
    )
    # the teacher is a target only: its logits are detached here (the official code runs it under no_grad)
    s_weak, t_weak, s_strong, t_strong = upcast(
        student_logits_weak, teacher_logits_weak.detach(), student_logits_strong, teacher_logits_strong.detach()
    )
    sample_mask, class_mask = mlkd_masks(t_weak)
    sample_share = sample_mask.to(s_weak.dtype).mean()
    class_share = class_mask.to(s_weak.dtype).mean()
    if logit_standardization:
        kd_views = {
            "weak": (logit_standardize(s_weak), logit_standardize(t_weak)),
            "strong": (logit_standardize(s_strong), logit_standardize(t_strong)),
        }
    else:
        kd_views = {"weak": (s_weak, t_weak), "strong": (s_strong, t_strong)}
    temperatures: list[Temperature] = [temperature, *extras]
    zero = s_weak.new_zeros(())
    kd_weak, kd_strong, cc, bc = zero, zero, zero, zero
    for position, value in enumerate(temperatures):
        kd_weak = kd_weak + sample_share * _kd(*kd_views["weak"], value)
        view = "strong" if position < STRONG_VIEW_TEMPERATURES else "weak"
        kd_strong = kd_strong + _kd(*kd_views[view], value)
        cc = cc + class_share * _class_correlation(s_weak, t_weak, value)
        bc = bc + sample_share * _batch_correlation(s_weak, t_weak, value)
    return {"kd_weak": kd_weak, "kd_strong": kd_strong, "cc": cc, "bc": bc, "loss": kd_weak + kd_strong + cc + bc}


def mlkd_loss(
    student_logits_weak: Tensor,
    teacher_logits_weak: Tensor,
    student_logits_strong: Tensor,
    teacher_logits_strong: Tensor,
    temperature: Temperature = 4.0,
    extra_temperatures: Sequence[float] = DEFAULT_EXTRA_TEMPERATURES,
    logit_standardization: bool = False,
) -> Tensor:
    r"""MLKD: :math:`kd\_weak + kd\_strong + cc + bc` (see the module docstring), without its overall weight.

    Args:
        student_logits_weak: (B, K) student logits of the weak views.
        teacher_logits_weak: (B, K) teacher logits of the weak views (detached inside).
        student_logits_strong: (B, K) student logits of the strong views of the same images.
        teacher_logits_strong: (B, K) teacher logits of the strong views.
        temperature: the base temperature T > 0 (a float, or a 0-d tensor such as CTKD's
            learnable temperature, which then receives gradients).
        extra_temperatures: the further temperatures, official ``(3, 5, 2, 6)``.
        logit_standardization: Z-score both logits inside the KD parts (MLKD+LS).

    Returns:
        Scalar tensor (float32 for half/bf16 inputs).
    """
    return mlkd_loss_parts(
        student_logits_weak,
        teacher_logits_weak,
        student_logits_strong,
        teacher_logits_strong,
        temperature=temperature,
        extra_temperatures=extra_temperatures,
        logit_standardization=logit_standardization,
    )["loss"]


class MLKDLoss(nn.Module):
    """Module form of :func:`mlkd_loss`; stores the temperatures and the standardisation switch."""

    def __init__(
        self,
        temperature: float = 4.0,
        extra_temperatures: Sequence[float] = DEFAULT_EXTRA_TEMPERATURES,
        logit_standardization: bool = False,
    ) -> None:
        super().__init__()
        check_positive("MLKDLoss", "temperature", temperature)
        for value in extra_temperatures:
            check_positive("MLKDLoss", "extra_temperatures", value)
        self.temperature = temperature
        self.extra_temperatures = tuple(float(t) for t in extra_temperatures)
        self.logit_standardization = bool(logit_standardization)

    def forward(
        self,
        student_logits_weak: Tensor,
        teacher_logits_weak: Tensor,
        student_logits_strong: Tensor,
        teacher_logits_strong: Tensor,
    ) -> Tensor:
        return mlkd_loss(
            student_logits_weak,
            teacher_logits_weak,
            student_logits_strong,
            teacher_logits_strong,
            temperature=self.temperature,
            extra_temperatures=self.extra_temperatures,
            logit_standardization=self.logit_standardization,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, extra_temperatures={self.extra_temperatures}, "
            f"logit_standardization={self.logit_standardization}"
        )


__all__ = ["MLKDLoss", "mlkd_loss", "mlkd_loss_parts", "mlkd_masks"]
