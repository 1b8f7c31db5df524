r"""CoSS: cosine similarity in sample and space dimensions.

Singh & Wang, "Simple Unsupervised Knowledge Distillation With Space
Similarity", ECCV 2024.

For student and teacher embeddings :math:`S, T \in \mathbb{R}^{B \times D}`:

.. math::

    \mathcal{L}_{CoSS} = \frac{1}{B} \sum_{i=1}^{B} \left(1 - \cos(S_{i,:}, T_{i,:})\right)
        + \lambda \cdot \frac{1}{D} \sum_{d=1}^{D} \left(1 - \cos(S_{:,d}, T_{:,d})\right)

The first term aligns each sample's embedding; the second ("space
similarity") aligns each embedding dimension viewed as a vector over the batch:
each column is L2-normalised across the batch, without mean-centring.

Notes:

* The official code divides both cosines by "temperatures" (0.07 and 0.1) that
  only rescale the loss, i.e. the whole loss is multiplied by 1 / (0.07 * 0.1);
  reproduce that with the method's term weight, not here.
* The space term depends on the batch composition. Under DDP each device
  computes it on its own shard by default (no all-gather), which changes the
  value with the number of devices.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_non_negative, check_same_shape, upcast


def coss_loss(student_embedding: Tensor, teacher_embedding: Tensor, space_weight: float = 1.0) -> Tensor:
    """Sample cosine term plus ``space_weight`` times the per-dimension (batch-wise) cosine term.

    Args:
        student_embedding: (B, D) student embeddings.
        teacher_embedding: (B, D) teacher embeddings of the same shape.
        space_weight: weight of the space-similarity term, >= 0.

    Returns:
        Scalar tensor.
    """
    fn = "coss_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_same_shape(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    check_min_batch(fn, "student_embedding", student_embedding, 1)
    check_non_negative(fn, "space_weight", space_weight)

    student, teacher = upcast(student_embedding, teacher_embedding)
    sample_cosine = (F.normalize(student, dim=1) * F.normalize(teacher, dim=1)).sum(dim=1)
    space_cosine = (F.normalize(student, dim=0) * F.normalize(teacher, dim=0)).sum(dim=0)
    return (1.0 - sample_cosine).mean() + space_weight * (1.0 - space_cosine).mean()


class CoSSLoss(nn.Module):
    """Module form of :func:`coss_loss`; stores the space-term weight."""

    def __init__(self, space_weight: float = 1.0) -> None:
        super().__init__()
        check_non_negative("CoSSLoss", "space_weight", space_weight)
        self.space_weight = space_weight

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
        return coss_loss(student_embedding, teacher_embedding, space_weight=self.space_weight)

    def extra_repr(self) -> str:
        return f"space_weight={self.space_weight}"


__all__ = ["CoSSLoss", "coss_loss"]
