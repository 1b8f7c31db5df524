r"""OFD: the margin-ReLU teacher and the partial L2 distance of feature distillation.

Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of Feature
Distillation", ICCV 2019.

The student is taught the teacher's *pre-ReLU* maps. Negative teacher values
are uninformative in detail (the ReLU removes them), so they are replaced by a
per-channel margin, the expected value of the negative responses: with the
teacher's BatchNorm before the ReLU giving, per channel, values
:math:`x \sim \mathcal{N}(\beta, \gamma^2)`,

.. math::

    m = \mathbb{E}[x \mid x < 0] = \beta - |\gamma| \,
        \frac{\varphi(\beta / |\gamma|)}{\Phi(-\beta / |\gamma|)}
    \quad \text{if } \Phi(-\beta/|\gamma|) > \texttt{min\_cdf}, \qquad
    m = -3|\gamma| \ \text{otherwise}

(:math:`\varphi, \Phi`: the standard normal density and distribution). With
:math:`t' = \max(t, m)` (the margin ReLU of the teacher map :math:`t`) and the
student map :math:`s` (after the method's connector), the partial L2 distance
skips the positions where the student is already below a negative target:

.. math::

    d(s, t) = \frac{1}{B} \sum_{b,c,h,w}
        \mathbb{1}[s > t' \ \lor\ t' > 0] \, (s - t')^2,
    \qquad
    \mathcal{L}_{OFD} = \sum_{i=0}^{n-1} 2^{-(n-1-i)} \, d(s_i, t_i)

over the n distilled layers, shallow to deep (the deepest weighs 1, each
shallower one half of the next).

Official code vs paper. The paper gives the margin and the partial L2 distance;
the ``min_cdf`` guard (0.001) with the :math:`-3|\gamma|` fallback, the
:math:`2^{-(n-1-i)}` layer weights and the division by the batch size are
those of the official code (clovaai/overhaul-distillation, ``get_margin_from_BN``,
``distillation_loss`` and the training script's ``/ batch_size``; mdistiller's
``OFD.py`` is the same). Where the teacher map's spatial size differs from the
student's, the teacher map is average-pooled to the student's size first, as
mdistiller does (the official code only distils pairs of equal sizes). A BN
channel with :math:`\gamma = 0` (a constant :math:`\beta`), where the official
code divides by zero, gets :math:`m = \beta` when :math:`\beta < 0` and
:math:`m = 0` otherwise (the limits of the two cases).

Shapes: ``bn_weight``/``bn_bias`` (C,) -> margin (C,); per layer the student
(B, C, H, W), the teacher (B, C, H', W') and its margin (C,). Official loss
weights (method): CIFAR-100 1e-3 (the script's ``/ 1000``), ImageNet 1e-4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_ndim, check_same_dim, shape_str, upcast

__all__ = ["OFDLoss", "ofd_loss", "ofd_margin"]

_LAYOUT = "(batch, channels, height, width)"


def ofd_margin(bn_weight: Tensor, bn_bias: Tensor, min_cdf: float = 1e-3) -> Tensor:
    r"""Per-channel margin :math:`\mathbb{E}[x \mid x < 0]` of :math:`x \sim \mathcal{N}(\beta, \gamma^2)`.

    Args:
        bn_weight: (C,) BatchNorm scale :math:`\gamma` of the teacher layer before its ReLU.
        bn_bias: (C,) BatchNorm shift :math:`\beta`.
        min_cdf: below this probability of a negative value, the margin is :math:`-3|\gamma|`
            (official: 0.001).

    Returns:
        (C,) margins (always <= 0), float32 for half/bfloat16 inputs (float64 stays float64);
        computed in float64 internally.
    """
    fn = "ofd_margin"
    check_ndim(fn, "bn_weight", bn_weight, 1, "(channels,)")
    check_ndim(fn, "bn_bias", bn_bias, 1, "(channels,)")
    if bn_weight.shape != bn_bias.shape:
        raise ValueError(
            f"{fn}: bn_weight {shape_str(bn_weight)} and bn_bias {shape_str(bn_bias)} must have the same shape"
        )
    if not 0.0 <= min_cdf < 1.0:
        raise ValueError(f"{fn}: min_cdf must lie in [0, 1), got {min_cdf}")
    out_dtype = upcast(bn_weight.detach(), bn_bias.detach())[0].dtype
    std = bn_weight.detach().double().abs()
    mean = bn_bias.detach().double()
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    ratio = mean / safe_std
    cdf = torch.special.ndtr(-ratio)
    pdf = torch.exp(-0.5 * ratio**2) / math.sqrt(2.0 * math.pi)
    gaussian = mean - safe_std * pdf / torch.where(cdf > 0, cdf, torch.ones_like(cdf))
    margin = torch.where(cdf > min_cdf, gaussian, -3.0 * std)
    constant = torch.where(mean < 0, mean, torch.zeros_like(mean))  # gamma = 0: all values equal beta
    margin = torch.where(std > 0, margin, constant)
    return margin.to(out_dtype)


def ofd_loss(
    student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], margins: Sequence[Tensor]
) -> Tensor:
    r"""Partial L2 distance to the margin-ReLU'd teacher maps, summed over layers (module docstring).

    Args:
        student_features: n student maps (B, C_i, H_i, W_i) (after the connector), shallow to deep.
        teacher_features: n teacher pre-ReLU maps (B, C_i, H'_i, W'_i); pooled to (H_i, W_i) when
            they differ.
        margins: n (C_i,) margins from :func:`ofd_margin`.

    Returns:
        Scalar :math:`\sum_i 2^{-(n-1-i)} d(s_i, t_i)`, float32 for half/bfloat16 inputs.
    """
    fn = "ofd_loss"
    students, teachers, margin_list = list(student_features), list(teacher_features), list(margins)
    if not (len(students) == len(teachers) == len(margin_list)):
        raise ValueError(
            f"{fn}: got {len(students)} student_features, {len(teachers)} teacher_features and "
            f"{len(margin_list)} margins; need one of each per layer"
        )
    if not students:
        raise ValueError(f"{fn}: no layers given; need at least one student/teacher/margin triple")
    for i, (s, t, m) in enumerate(zip(students, teachers, margin_list)):
        check_ndim(fn, f"student_features[{i}]", s, 4, _LAYOUT)
        check_ndim(fn, f"teacher_features[{i}]", t, 4, _LAYOUT)
        check_same_dim(fn, f"student_features[{i}]", s, f"teacher_features[{i}]", t, 0, "batch size")
        check_same_dim(fn, f"student_features[{i}]", s, f"teacher_features[{i}]", t, 1, "number of channels")
        if m.shape != (s.shape[1],):
            raise ValueError(
                f"{fn}: margins[{i}] must have shape ({s.shape[1]},) (one per channel of student_features[{i}] "
                f"{shape_str(s)}), got {shape_str(m)}"
            )
    n = len(students)
    total: Tensor | None = None
    for i, (s, t, m) in enumerate(zip(students, teachers, margin_list)):
        student, teacher = upcast(s, t)
        margin = m.to(device=student.device, dtype=student.dtype)  # the features set the compute dtype
        if teacher.shape[-2:] != student.shape[-2:]:
            teacher = F.adaptive_avg_pool2d(teacher, student.shape[-2:])
        target = torch.maximum(teacher, margin.view(1, -1, 1, 1))
        mask = (student > target) | (target > 0)
        layer = ((student - target) ** 2 * mask).sum() / student.shape[0]
        term = layer / 2 ** (n - 1 - i)
        total = term if total is None else total + term
    assert total is not None
    return total


class OFDLoss(nn.Module):
    """Module form of :func:`ofd_loss` holding the margins as buffers (from the teacher's BNs)."""

    def __init__(self, margins: Sequence[Tensor]) -> None:
        super().__init__()
        self.num_layers = len(list(margins))
        for i, margin in enumerate(margins):
            self.register_buffer(f"margin{i}", margin.detach().clone())

    @property
    def margins(self) -> list[Tensor]:
        return [getattr(self, f"margin{i}") for i in range(self.num_layers)]

    def forward(self, student_features: Sequence[Tensor], teacher_features: Sequence[Tensor]) -> Tensor:
        return ofd_loss(student_features, teacher_features, self.margins)

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}"
