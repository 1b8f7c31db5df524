r"""Neuron selectivity transfer (NST).

Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer", arXiv:1707.01219, 2017.

Each channel of a feature map :math:`f \in \mathbb{R}^{C \times H \times W}` is
a sample :math:`f_{c} \in \mathbb{R}^{HW}` (its spatial activation pattern),
L2-normalised, :math:`\hat f_c = f_c / \lVert f_c \rVert_2`. NST minimises the
squared maximum mean discrepancy between the student's and the teacher's
channel distributions with the polynomial kernel
:math:`k(x, y) = (x^\top y)^2` (d = 2, c = 0):

.. math::

    \mathcal{L}_{NST} = \frac{1}{B} \sum_b \Big[
        \frac{1}{C_t^2} \sum_{i,j} k(\hat t_{b,i}, \hat t_{b,j})
      + \frac{1}{C_s^2} \sum_{i,j} k(\hat s_{b,i}, \hat s_{b,j})
      - \frac{2}{C_s C_t} \sum_{i,j} k(\hat s_{b,i}, \hat t_{b,j}) \Big]

Channel counts may differ. When spatial sizes differ, the larger map is
adaptive-average-pooled to the smaller one, ``(min(H_s, H_t), min(W_s, W_t))``,
before the normalisation, as RepDistiller's ``NSTLoss`` does (it pools to
``(H, H)`` of the smaller map; the same for the square maps of the CIFAR zoo).
With lists of layers the per-layer values are summed (RepDistiller's
``sum(loss_group)`` over ``feat[1:-1]``).

Official code vs paper: kdlab follows RepDistiller's ``NSTLoss`` ("full loss"):
the mean over batch and channel pairs above (the paper writes the MMD² per
sample and weights it by lambda), applied to the intermediate maps
``feat[1:-1]`` with weight 50 and without KD; the teacher-teacher term, which
RepDistiller detaches, carries no student gradient here either.

Shapes: student (B, C_s, H_s, W_s), teacher (B, C_t, H_t, W_t).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_same_dim, upcast

Layers = Union[Tensor, Sequence[Tensor]]


def _pool_to(feature: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(feature.shape[2:]) == size:
        return feature
    return F.adaptive_avg_pool2d(feature, size)


def _poly_kernel_mean(a: Tensor, b: Tensor) -> Tensor:
    """Mean over batch and channel pairs of ``(a_i . b_j)**2`` for (B, C_a, N) and (B, C_b, N)."""
    return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()


def _nst_layer(fn: str, where: str, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    check_ndim(fn, f"student_features{where}", student_feature, 4, "(batch, channels, height, width)")
    check_ndim(fn, f"teacher_features{where}", teacher_feature, 4, "(batch, channels, height, width)")
    check_same_dim(
        fn, f"student_features{where}", student_feature, f"teacher_features{where}", teacher_feature, 0, "batch size"
    )
    check_min_batch(fn, f"student_features{where}", student_feature, 1)

    student, teacher = upcast(student_feature, teacher_feature)
    size = (min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3]))
    student = F.normalize(_pool_to(student, size).flatten(2), dim=2)
    teacher = F.normalize(_pool_to(teacher, size).flatten(2), dim=2)
    return _poly_kernel_mean(teacher, teacher) + _poly_kernel_mean(student, student) - 2 * _poly_kernel_mean(
        student, teacher
    )


def nst_loss(student_features: Layers, teacher_features: Layers) -> Tensor:
    """NST: MMD² with the polynomial kernel (x.y)² between L2-normalised channel activation patterns.

    Args:
        student_features: (B, C_s, H_s, W_s) student map, or a list of them (one per layer).
        teacher_features: (B, C_t, H_t, W_t) teacher map, or a list of the same length.

    Returns:
        Scalar tensor: per layer the mean over the batch and the channel pairs, summed over layers.
    """
    fn = "nst_loss"
    if isinstance(student_features, Tensor) and isinstance(teacher_features, Tensor):
        return _nst_layer(fn, "", student_features, teacher_features)
    if isinstance(student_features, Tensor) or isinstance(teacher_features, Tensor):
        raise ValueError(f"{fn}: student_features and teacher_features must both be tensors or both be lists")
    if len(student_features) != len(teacher_features) or len(student_features) == 0:
        raise ValueError(
            f"{fn}: student_features and teacher_features must be non-empty lists of equal length, got "
            f"{len(student_features)} and {len(teacher_features)} layers"
        )
    values = [
        _nst_layer(fn, f"[{i}]", student, teacher)
        for i, (student, teacher) in enumerate(zip(student_features, teacher_features))
    ]
    return torch.stack(values).sum()


class NSTLoss(nn.Module):
    """Module form of :func:`nst_loss` (no hyper-parameters)."""

    def forward(self, student_features: Layers, teacher_features: Layers) -> Tensor:
        return nst_loss(student_features, teacher_features)


__all__ = ["NSTLoss", "nst_loss"]
