r"""Embedding regression losses: cosine and MSE between student and teacher embeddings.

Plain feature-mimicking baselines for label-free distillation:

.. math::

    \mathcal{L}_{cos} = \frac{1}{B} \sum_i \left(1 - \cos(s_i, t_i)\right), \qquad
    \mathcal{L}_{mse} = \frac{1}{B D} \sum_{i,d} \left(\hat s_{i,d} - \hat t_{i,d}\right)^2

with :math:`\hat e = e / \lVert e \rVert_2` when ``normalize=True``. For unit
vectors :math:`\lVert \hat s - \hat t \rVert^2 = 2 - 2\cos(s, t)`, so the
normalised MSE equals :math:`2\,\mathcal{L}_{cos} / D`: the same direction-only
objective at a scale that shrinks with the dimension.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_same_shape, upcast


def cosine_embedding_loss(student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
    """``mean_i (1 - cos(s_i, t_i))`` over the batch.

    Args:
        student_embedding: (B, D) student embeddings.
        teacher_embedding: (B, D) teacher embeddings of the same shape.

    Returns:
        Scalar tensor in [0, 2].
    """
    fn = "cosine_embedding_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_same_shape(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    check_min_batch(fn, "student_embedding", student_embedding, 1)
    student, teacher = upcast(student_embedding, teacher_embedding)
    cosine = (F.normalize(student, dim=1) * F.normalize(teacher, dim=1)).sum(dim=1)
    return (1.0 - cosine).mean()


def mse_embedding_loss(student_embedding: Tensor, teacher_embedding: Tensor, normalize: bool = True) -> Tensor:
    """Mean squared error over all elements, of L2-normalised rows when ``normalize`` (default).

    Args:
        student_embedding: (B, D) student embeddings.
        teacher_embedding: (B, D) teacher embeddings of the same shape.
        normalize: L2-normalise each row of both inputs first.

    Returns:
        Scalar tensor.
    """
    fn = "mse_embedding_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_same_shape(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    check_min_batch(fn, "student_embedding", student_embedding, 1)
    student, teacher = upcast(student_embedding, teacher_embedding)
    if normalize:
        student, teacher = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
    return (student - teacher).pow(2).mean()


class CosineEmbeddingLoss(nn.Module):
    """Module form of :func:`cosine_embedding_loss` (no hyper-parameters)."""

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
        return cosine_embedding_loss(student_embedding, teacher_embedding)


class MSEEmbeddingLoss(nn.Module):
    """Module form of :func:`mse_embedding_loss`; stores ``normalize``."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
        return mse_embedding_loss(student_embedding, teacher_embedding, normalize=self.normalize)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"


__all__ = ["CosineEmbeddingLoss", "MSEEmbeddingLoss", "cosine_embedding_loss", "mse_embedding_loss"]
