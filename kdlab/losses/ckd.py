r"""Contrastive knowledge distillation from a sample-wise perspective (CKD).

Zhu et al., "Contrastive Knowledge Distillation from a Sample-wise
Perspective", arXiv:2404.14109.

Each sample's logit vector is L2-normalised over the classes,
:math:`\hat z_i = z_i / \lVert z_i \rVert_2`. With a batch of B samples the
loss is an InfoNCE over the batch, positive pair :math:`(\hat t_i, \hat s_i)`:

.. math::

    S_{ij} = \frac{\hat t_i \cdot \hat s_j}{T}, \qquad
    \mathcal{L}_{CKD} = -\frac{1}{B} \sum_{i=1}^{B}
        \log \frac{\exp S_{ii}}{\sum_{j=1}^{B} \exp S_{ij}}

so the negatives of teacher sample i are the *student* logits of the other
samples (``negatives="teacher_student"``, the official code's form). No memory
bank is used.

Official code vs paper text. The second arXiv version describes the negatives
as student-student pairs :math:`(\hat s_i, \hat s_j)`: row i holds
:math:`[\hat t_i \cdot \hat s_i / T] \cup \{\hat s_i \cdot \hat s_j / T\}_{j \ne i}`
with the positive at position i. That variant is ``negatives="student_student"``.
The paper also describes an intra-sample constraint (student and teacher
logits of the same sample should agree); ``intra_weight > 0`` adds it as an
explicit extra term ``intra_weight * mean_i (1 - cos(s_i, t_i))``
(default 0, i.e. the contrastive objective alone).

Official weights: total = 1.0 * CE + w * CKD with w = 100 on most CIFAR-100
teacher/student pairs and T = 1. The weighting belongs to the method.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import (
    check_min_batch,
    check_ndim,
    check_non_negative,
    check_positive,
    check_same_shape,
    upcast,
)

CKDNegatives = Literal["teacher_student", "student_student"]
_NEGATIVE_KINDS = ("teacher_student", "student_student")


def ckd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    negatives: CKDNegatives = "teacher_student",
    intra_weight: float = 0.0,
) -> Tensor:
    r"""Sample-wise contrastive distillation of L2-normalised logits.

    ``negatives="teacher_student"``: row i of the (B, B) logit matrix is
    :math:`\hat t_i \cdot \hat s_j / T` for all j; cross-entropy with target i.
    ``negatives="student_student"``: row i is :math:`\hat s_i \cdot \hat s_j / T`
    for j != i and :math:`\hat t_i \cdot \hat s_i / T` at position i.
    The result is averaged over rows, plus
    ``intra_weight * mean_i (1 - cos(s_i, t_i))``.

    Args:
        student_logits: (B, K) student logits.
        teacher_logits: (B, K) teacher logits.
        temperature: contrastive temperature T > 0 (official: 1).
        negatives: which pairs act as negatives (see the module docstring).
        intra_weight: weight of the explicit intra-sample term, >= 0.

    Returns:
        Scalar tensor. With B = 1 there are no negatives and the contrastive
        part is exactly 0.
    """
    fn = "ckd_loss"
    check_ndim(fn, "student_logits", student_logits, 2, "(batch, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "student_logits", student_logits, 1)
    check_positive(fn, "temperature", temperature)
    check_non_negative(fn, "intra_weight", intra_weight)
    if negatives not in _NEGATIVE_KINDS:
        raise ValueError(f"{fn}: negatives must be one of {_NEGATIVE_KINDS}, got {negatives!r}")

    student, teacher = upcast(student_logits, teacher_logits)
    student = F.normalize(student, dim=1)
    teacher = F.normalize(teacher, dim=1)
    positive = (teacher * student).sum(dim=1)
    if negatives == "teacher_student":
        scores = teacher @ student.T
    else:
        diagonal = torch.eye(student.shape[0], dtype=torch.bool, device=student.device)
        scores = torch.where(diagonal, torch.diag_embed(positive), student @ student.T)
    targets = torch.arange(student.shape[0], device=student.device)
    loss = F.cross_entropy(scores / temperature, targets)
    if intra_weight > 0:
        loss = loss + intra_weight * (1.0 - positive).mean()
    return loss


class CKDLoss(nn.Module):
    """Module form of :func:`ckd_loss`; stores temperature, negatives kind and intra weight."""

    def __init__(
        self,
        temperature: float = 1.0,
        negatives: CKDNegatives = "teacher_student",
        intra_weight: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("CKDLoss", "temperature", temperature)
        check_non_negative("CKDLoss", "intra_weight", intra_weight)
        if negatives not in _NEGATIVE_KINDS:
            raise ValueError(f"CKDLoss: negatives must be one of {_NEGATIVE_KINDS}, got {negatives!r}")
        self.temperature = temperature
        self.negatives: CKDNegatives = negatives
        self.intra_weight = intra_weight

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return ckd_loss(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            negatives=self.negatives,
            intra_weight=self.intra_weight,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, negatives={self.negatives!r}, intra_weight={self.intra_weight}"


__all__ = ["CKDLoss", "CKDNegatives", "ckd_loss"]
