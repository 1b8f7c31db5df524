r"""Attention transfer (AT).

Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017.

The spatial attention map of a feature :math:`f \in \mathbb{R}^{C \times H \times W}`
is the channel mean of :math:`|f|^p`, flattened and L2-normalised per sample:

.. math::

    a(f) = \frac{\mathrm{vec}(Q)}{\lVert \mathrm{vec}(Q) \rVert_2}, \qquad
    Q_{hw} = \frac{1}{C} \sum_{c=1}^{C} |f_{c,h,w}|^p

.. math::

    \mathcal{L}_{AT} = \frac{1}{B \cdot HW} \sum_{b=1}^{B} \sum_{hw}
        \left(a(f^s_b)_{hw} - a(f^t_b)_{hw}\right)^2

Channel counts may differ because the map averages them away. When the spatial
sizes differ, each (unnormalised) map is adaptive-average-pooled to the
smaller size per axis, ``(min(H_s, H_t), min(W_s, W_t))``, before the L2
normalisation. (RepDistiller's AT pools the features instead, which gives a
slightly different map whenever pooling happens.)

Common recipes weight the summed per-layer AT terms by beta = 1000; that
weight belongs to the method.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_positive, check_same_dim, upcast


def attention_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """(B, C, H, W) -> (B, H, W): channel mean of ``|feature|**p`` (not normalised)."""
    return feature.abs().pow(p).mean(dim=1)


def at_loss(student_feature: Tensor, teacher_feature: Tensor, p: float = 2) -> Tensor:
    """Attention transfer: mean squared difference of L2-normalised attention maps.

    Args:
        student_feature: (B, C_s, H_s, W_s) student feature map.
        teacher_feature: (B, C_t, H_t, W_t) teacher feature map.
        p: exponent of the attention map, > 0 (official: 2).

    Returns:
        Scalar tensor: mean over the batch and the (common) spatial positions.
    """
    fn = "at_loss"
    check_ndim(fn, "student_feature", student_feature, 4, "(batch, channels, height, width)")
    check_ndim(fn, "teacher_feature", teacher_feature, 4, "(batch, channels, height, width)")
    check_same_dim(fn, "student_feature", student_feature, "teacher_feature", teacher_feature, 0, "batch size")
    check_min_batch(fn, "student_feature", student_feature, 1)
    check_positive(fn, "p", p)

    student, teacher = upcast(student_feature, teacher_feature)
    student_map = attention_map(student, p)
    teacher_map = attention_map(teacher, p)
    common_size = (
        min(student_map.shape[1], teacher_map.shape[1]),
        min(student_map.shape[2], teacher_map.shape[2]),
    )
    student_map = _pool_to(student_map, common_size)
    teacher_map = _pool_to(teacher_map, common_size)
    student_vec = F.normalize(student_map.flatten(1), dim=1)
    teacher_vec = F.normalize(teacher_map.flatten(1), dim=1)
    return (student_vec - teacher_vec).pow(2).mean()


def _pool_to(attention: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(attention.shape[1:]) == size:
        return attention
    return F.adaptive_avg_pool2d(attention.unsqueeze(1), size).squeeze(1)


class ATLoss(nn.Module):
    """Module form of :func:`at_loss`; stores the exponent p."""

    def __init__(self, p: float = 2) -> None:
        super().__init__()
        check_positive("ATLoss", "p", p)
        self.p = p

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        return at_loss(student_feature, teacher_feature, p=self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


__all__ = ["ATLoss", "at_loss", "attention_map"]
