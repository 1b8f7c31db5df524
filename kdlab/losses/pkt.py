r"""Probabilistic knowledge transfer (PKT).

Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV 2018.

Embeddings are L2-normalised, their cosine similarities rescaled to [0, 1] and
each row turned into a conditional distribution over the batch:

.. math::

    K_{ij} = \frac{\cos(e_i, e_j) + 1}{2}, \qquad
    P_{ij} = \frac{K_{ij}}{\sum_{j'} K_{ij'}}

.. math::

    \mathcal{L}_{PKT} = \frac{1}{B^2} \sum_{i,j} P^t_{ij}
        \log \frac{P^t_{ij} + \epsilon}{P^s_{ij} + \epsilon}

The diagonal (self-similarity) is included, as in the official code.
Student and teacher embedding sizes may differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_positive, check_same_dim, upcast


def pkt_conditional_probabilities(embedding: Tensor) -> Tensor:
    """(B, D) -> (B, B): rows of (cosine + 1) / 2, each normalised to sum to 1."""
    unit = F.normalize(embedding, dim=1)
    kernel = (unit @ unit.T + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


def pkt_loss(student_embedding: Tensor, teacher_embedding: Tensor, eps: float = 1e-7) -> Tensor:
    """PKT: mean over all (i, j) of ``P_t * log((P_t + eps) / (P_s + eps))``.

    Args:
        student_embedding: (B, D_s) student embeddings.
        teacher_embedding: (B, D_t) teacher embeddings.
        eps: smoothing inside the log, > 0.

    Returns:
        Scalar tensor.
    """
    fn = "pkt_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_ndim(fn, "teacher_embedding", teacher_embedding, 2, "(batch, dim)")
    check_same_dim(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding, 0, "batch size")
    check_min_batch(fn, "student_embedding", student_embedding, 1)
    check_positive(fn, "eps", eps)

    student, teacher = upcast(student_embedding, teacher_embedding)
    p_student = pkt_conditional_probabilities(student)
    p_teacher = pkt_conditional_probabilities(teacher)
    return (p_teacher * torch.log((p_teacher + eps) / (p_student + eps))).mean()


class PKTLoss(nn.Module):
    """Module form of :func:`pkt_loss`; stores eps."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        check_positive("PKTLoss", "eps", eps)
        self.eps = eps

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
        return pkt_loss(student_embedding, teacher_embedding, eps=self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


__all__ = ["PKTLoss", "pkt_conditional_probabilities", "pkt_loss"]
