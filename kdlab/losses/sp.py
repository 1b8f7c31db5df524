r"""Similarity-preserving knowledge distillation (SP).

Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

With :math:`F \in \mathbb{R}^{B \times N}` the flattened features of a batch,
the batch similarity :math:`G = F F^\top` (B x B) has each row L2-normalised,
:math:`\tilde G_{i} = G_{i} / \lVert G_{i} \rVert_2`, and

.. math::

    \mathcal{L}_{SP} = \frac{1}{B^2} \sum_{i,j} \left(\tilde G^t_{ij} - \tilde G^s_{ij}\right)^2

Only the B x B similarity is compared, so student and teacher features may have
any (different) trailing shapes. RepDistiller weights the term by
gamma = 3000; that weight belongs to the method.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_min_ndim, check_same_dim, upcast


def batch_similarity(feature: Tensor) -> Tensor:
    """(B, ...) -> (B, B): Gram matrix of the flattened features, rows L2-normalised."""
    flat = feature.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


def sp_loss(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """Similarity-preserving loss: squared difference of row-normalised batch Gram matrices / B^2.

    Args:
        student_feature: (B, ...) student features, any trailing dims.
        teacher_feature: (B, ...) teacher features, any trailing dims.

    Returns:
        Scalar tensor.
    """
    fn = "sp_loss"
    check_min_ndim(fn, "student_feature", student_feature, 2, "(batch, ...)")
    check_min_ndim(fn, "teacher_feature", teacher_feature, 2, "(batch, ...)")
    check_same_dim(fn, "student_feature", student_feature, "teacher_feature", teacher_feature, 0, "batch size")
    check_min_batch(fn, "student_feature", student_feature, 1)

    student, teacher = upcast(student_feature, teacher_feature)
    batch_size = student.shape[0]
    difference = batch_similarity(teacher) - batch_similarity(student)
    return difference.pow(2).sum() / batch_size**2


class SPLoss(nn.Module):
    """Module form of :func:`sp_loss` (no hyper-parameters)."""

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        return sp_loss(student_feature, teacher_feature)


__all__ = ["SPLoss", "batch_similarity", "sp_loss"]
