r"""Activation boundaries (AB).

Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation
Boundaries Formed by Hidden Neurons", AAAI 2019.

AB transfers *where* the teacher's neurons are active: a student neuron
(the connector's output :math:`s`, mapped onto the teacher's shape) should be
above :math:`+m` where the teacher's pre-activation :math:`t` is positive and
below :math:`-m` where it is not. The paper's alternative (differentiable)
loss, a squared hinge with margin :math:`m`, per layer :math:`k`:

.. math::

    \ell_k = \sum_{c,h,w} \Big[ (s + m)^2 \, \mathbb{1}(s > -m,\ t \le 0)
                           + (s - m)^2 \, \mathbb{1}(s \le m,\ t > 0) \Big]

summed over the batch as well. Over n layers (shallow to deep):

.. math::

    \mathcal{L}_{AB} = \frac{3}{1000} \cdot \frac{1}{B} \sum_{k=0}^{n-1} 2^{\,k-n+1} \, \ell_k

Official code vs paper: the layer weights :math:`2^{k-n+1}` (1 for the deepest,
1/2, 1/4, ... below it) and the scale ``/ B / 1000 * 3`` are those of the
authors' code (bhheo/AB_distillation) and of RepDistiller's ``ABLoss``, which
kdlab follows; the paper gives the per-layer loss without them. The connectors
(RepDistiller's ``Connector``: identity where channels and size already match,
else a ``ConvReg`` without ReLU) and the pre-ReLU features belong to the method,
as does the two-stage training (AB alone first, then the task).

Shapes: each student map (B, C, H, W) equals its teacher map's shape.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

from kdlab.losses._checks import (
    check_min_batch,
    check_ndim,
    check_non_negative,
    check_same_dim,
    check_same_shape,
    upcast,
)

Layers = Union[Tensor, Sequence[Tensor]]

#: the official code's overall scale, ``loss / 1000 * 3``
AB_SCALE = 3.0 / 1000.0


def _boundary_loss(student: Tensor, teacher: Tensor, margin: float) -> Tensor:
    """Sum over every element of the squared hinge around the teacher's activation boundary."""
    student, teacher = upcast(student, teacher)
    teacher_active = teacher > 0
    should_be_off = (student > -margin) & ~teacher_active
    should_be_on = (student <= margin) & teacher_active
    return ((student + margin).pow(2) * should_be_off + (student - margin).pow(2) * should_be_on).sum()


def ab_loss(student_features: Layers, teacher_features: Layers, margin: float = 1.0) -> Tensor:
    """AB: weighted squared-hinge loss on the teacher's activation boundaries (see the module docstring).

    Args:
        student_features: the connector outputs, (B, C, H, W) or a list of them, shallow to deep.
        teacher_features: the teacher's pre-activation maps, the same shapes (a tensor or a list).
        margin: the boundary margin m >= 0 (official: 1.0).

    Returns:
        Scalar tensor: ``3/1000 / B * sum_k 2^(k-n+1) * l_k``.
    """
    fn = "ab_loss"
    check_non_negative(fn, "margin", margin)
    if isinstance(student_features, Tensor) and isinstance(teacher_features, Tensor):
        student_features, teacher_features = [student_features], [teacher_features]
    elif isinstance(student_features, Tensor) or isinstance(teacher_features, Tensor):
        raise ValueError(f"{fn}: student_features and teacher_features must both be tensors or both be lists")
    if len(student_features) != len(teacher_features) or len(student_features) == 0:
        raise ValueError(
            f"{fn}: student_features and teacher_features must be non-empty lists of equal length, got "
            f"{len(student_features)} and {len(teacher_features)} layers"
        )
    layers = len(student_features)
    values = []
    for k, (student, teacher) in enumerate(zip(student_features, teacher_features)):
        check_ndim(fn, f"student_features[{k}]", student, 4, "(batch, channels, height, width)")
        check_same_shape(fn, f"student_features[{k}]", student, f"teacher_features[{k}]", teacher)
        check_min_batch(fn, f"student_features[{k}]", student, 1)
        check_same_dim(fn, "student_features[0]", student_features[0], f"student_features[{k}]", student, 0,
                       "batch size")
        values.append(2.0 ** (k - layers + 1) * _boundary_loss(student, teacher, float(margin)))
    batch = student_features[0].shape[0]
    return torch.stack(values).sum() / batch * AB_SCALE


class ABLoss(nn.Module):
    """Module form of :func:`ab_loss` holding the margin."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        check_non_negative("ABLoss", "margin", margin)
        self.margin = float(margin)

    def forward(self, student_features: Layers, teacher_features: Layers) -> Tensor:
        return ab_loss(student_features, teacher_features, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


__all__ = ["AB_SCALE", "ABLoss", "ab_loss"]
