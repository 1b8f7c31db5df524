r"""Flow of solution procedure (FSP).

Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization,
Network Minimization and Transfer Learning", CVPR 2017.

The FSP matrix of two feature maps of one network, a lower one
:math:`l \in \mathbb{R}^{C_l \times H \times W}` and the upper one
:math:`u \in \mathbb{R}^{C_u \times H \times W}` that follows it, is the
spatially averaged product of every pair of their channels:

.. math::

    G_{b,i,j}(l, u) = \frac{1}{HW} \sum_{h=1}^{H} \sum_{w=1}^{W} u_{b,i,h,w} \, l_{b,j,h,w}
    \qquad (B \times C_u \times C_l)

When the two maps differ in size, the larger is adaptive-average-pooled to the
smaller, ``(min(H_l, H_u), min(W_l, W_u))``. For a list of maps
:math:`f_0, \dots, f_n` of each network (student s, teacher t) the loss sums,
over the consecutive pairs, the mean squared difference of the matrices:

.. math::

    \mathcal{L}_{FSP} = \sum_{k=0}^{n-1} \frac{1}{B C_{k+1} C_k} \sum_{b,i,j}
        \left( G_{b,i,j}(s_k, s_{k+1}) - G_{b,i,j}(t_k, t_{k+1}) \right)^2

so the two networks' maps must have equal channel counts position by position
(their spatial sizes may differ: a matrix has none).

Official code vs paper: kdlab follows RepDistiller's ``distiller_zoo/FSP.py``:
the mean over the batch and the matrix entries of each pair (the paper sums the
squared L2 norm and averages over the samples only, with weights lambda_k, all
equal in its experiments), the pairs summed with weight 1, and an error when any
channel count differs (RepDistiller's ``FSP.__init__`` raises). RepDistiller
pools to ``(H, H)`` of the smaller map; the same for the square maps of the
CIFAR zoo. The two-stage training (FSP alone first, then the task) belongs to the
method (``kdlab.methods.init_stage``).

Shapes: every map (B, C_k, H_k, W_k); the lists of both networks have the same
length n + 1 >= 2.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_same_dim, upcast


def _pool_to(feature: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(feature.shape[2:]) == size:
        return feature
    return F.adaptive_avg_pool2d(feature, size)


def fsp_matrix(lower: Tensor, upper: Tensor) -> Tensor:
    """The FSP matrix ``G[b, i, j] = (1/HW) sum_hw upper[b, i] * lower[b, j]`` of two maps of one network.

    Args:
        lower: (B, C_l, H_l, W_l), the shallower map.
        upper: (B, C_u, H_u, W_u), the deeper map; the larger of the two is average-pooled to the smaller.

    Returns:
        (B, C_u, C_l) tensor (float32 for half inputs).
    """
    fn = "fsp_matrix"
    check_ndim(fn, "lower", lower, 4, "(batch, channels, height, width)")
    check_ndim(fn, "upper", upper, 4, "(batch, channels, height, width)")
    check_same_dim(fn, "lower", lower, "upper", upper, 0, "batch size")
    check_min_batch(fn, "lower", lower, 1)
    lower, upper = upcast(lower, upper)
    size = (min(lower.shape[2], upper.shape[2]), min(lower.shape[3], upper.shape[3]))
    lower_flat = _pool_to(lower, size).flatten(2)
    upper_flat = _pool_to(upper, size).flatten(2)
    return torch.bmm(upper_flat, lower_flat.transpose(1, 2)) / (size[0] * size[1])


def _check_lists(fn: str, student_features: Sequence[Tensor], teacher_features: Sequence[Tensor]) -> None:
    if isinstance(student_features, Tensor) or isinstance(teacher_features, Tensor):
        raise ValueError(f"{fn}: student_features and teacher_features must be lists of feature maps, not tensors")
    if len(student_features) != len(teacher_features) or len(student_features) < 2:
        raise ValueError(
            f"{fn}: student_features and teacher_features must be lists of equal length >= 2 (consecutive maps are "
            f"paired), got {len(student_features)} and {len(teacher_features)} maps"
        )
    for i, (student, teacher) in enumerate(zip(student_features, teacher_features)):
        check_ndim(fn, f"student_features[{i}]", student, 4, "(batch, channels, height, width)")
        check_ndim(fn, f"teacher_features[{i}]", teacher, 4, "(batch, channels, height, width)")
        check_same_dim(fn, f"student_features[{i}]", student, f"teacher_features[{i}]", teacher, 0, "batch size")
    unequal = [
        f"[{i}] {int(s.shape[1])} vs {int(t.shape[1])}"
        for i, (s, t) in enumerate(zip(student_features, teacher_features))
        if s.shape[1] != t.shape[1]
    ]
    if unequal:
        raise ValueError(
            f"{fn}: FSP needs equal channel counts in the student's and the teacher's maps; they differ at "
            f"{', '.join(unequal)} (student vs teacher channels)"
        )


def fsp_loss(student_features: Sequence[Tensor], teacher_features: Sequence[Tensor]) -> Tensor:
    """FSP: sum over consecutive map pairs of the mean squared difference of the FSP matrices.

    Args:
        student_features: the student's maps, shallow to deep, each (B, C_k, H_k, W_k).
        teacher_features: the teacher's maps, the same length and the same channel counts.

    Returns:
        Scalar tensor.
    """
    fn = "fsp_loss"
    _check_lists(fn, student_features, teacher_features)
    values = []
    for k in range(len(student_features) - 1):
        student = fsp_matrix(student_features[k], student_features[k + 1])
        teacher = fsp_matrix(teacher_features[k], teacher_features[k + 1])
        student, teacher = upcast(student, teacher)
        values.append((student - teacher).pow(2).mean())
    return torch.stack(values).sum()


class FSPLoss(nn.Module):
    """Module form of :func:`fsp_loss` (no hyper-parameters)."""

    def forward(self, student_features: Sequence[Tensor], teacher_features: Sequence[Tensor]) -> Tensor:
        return fsp_loss(student_features, teacher_features)


__all__ = ["FSPLoss", "fsp_loss", "fsp_matrix"]
