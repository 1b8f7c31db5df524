r"""Relational knowledge distillation (RKD).

Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019.

Distance-wise term: with :math:`d_{ij} = \lVert e_i - e_j \rVert_2` and
:math:`\mu = \frac{1}{B(B-1)} \sum_{i \ne j} d_{ij}` (mean off-diagonal distance),

.. math::

    \mathcal{L}_{D} = \frac{1}{B^2} \sum_{i,j}
        \ell_\delta\!\left(\frac{d^s_{ij}}{\mu^s}, \frac{d^t_{ij}}{\mu^t}\right)

Angle-wise term: for every anchor i and pair (j, k),

.. math::

    c_{ijk} = \left\langle \frac{e_j - e_i}{\lVert e_j - e_i \rVert},
                         \frac{e_k - e_i}{\lVert e_k - e_i \rVert} \right\rangle,
    \qquad
    \mathcal{L}_{A} = \frac{1}{B^3} \sum_{i,j,k} \ell_\delta(c^s_{ijk}, c^t_{ijk})

:math:`\ell_\delta` is the Huber / smooth-L1 loss with delta 1. Both means run
over the full tensors, including the zero diagonal of the distance matrix and
the degenerate triplets (j = i or k = i) whose zero difference vector gives a
cosine of 0 on both sides, as in the official code.

.. math::

    \mathcal{L}_{RKD} = w_D \mathcal{L}_D + w_A \mathcal{L}_A \quad (w_D = 25, w_A = 50)

Memory: the angle term builds a (B, B, D) tensor of differences, like the
official code; a term with weight 0 is skipped entirely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_non_negative, check_same_dim, upcast

# Squared distances are clamped before the square root so that its gradient
# stays finite at (numerically) coincident points.
_SQUARED_DISTANCE_FLOOR = 1e-12


def normalized_distances(embedding: Tensor) -> Tensor:
    """(B, D) -> (B, B) Euclidean distances divided by their mean off-diagonal value.

    The diagonal is exactly 0. Needs B >= 2.
    """
    squared_norms = embedding.pow(2).sum(dim=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2.0 * embedding @ embedding.T
    distances = squared.clamp(min=_SQUARED_DISTANCE_FLOOR).sqrt()
    off_diagonal = ~torch.eye(embedding.shape[0], dtype=torch.bool, device=embedding.device)
    distances = distances * off_diagonal
    mean_distance = distances[off_diagonal].mean()
    return distances / mean_distance


def triplet_angles(embedding: Tensor) -> Tensor:
    """(B, D) -> (B, B, B): ``[i, j, k]`` = cosine of the angle at anchor i between j and k."""
    directions = F.normalize(embedding[None, :, :] - embedding[:, None, :], dim=2)
    return directions @ directions.transpose(1, 2)


def rkd_loss(
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> Tensor:
    """RKD: ``distance_weight * L_distance + angle_weight * L_angle`` (smooth-L1, mean).

    Args:
        student_embedding: (B, D_s) student embeddings, B >= 2.
        teacher_embedding: (B, D_t) teacher embeddings (D_t may differ from D_s).
        distance_weight: weight of the distance-wise term, >= 0.
        angle_weight: weight of the angle-wise term, >= 0.

    Returns:
        Scalar tensor.
    """
    fn = "rkd_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_ndim(fn, "teacher_embedding", teacher_embedding, 2, "(batch, dim)")
    check_same_dim(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding, 0, "batch size")
    check_min_batch(fn, "student_embedding", student_embedding, 2)
    check_non_negative(fn, "distance_weight", distance_weight)
    check_non_negative(fn, "angle_weight", angle_weight)

    student, teacher = upcast(student_embedding, teacher_embedding)
    loss = student.new_zeros(())
    if distance_weight > 0:
        distance_term = F.smooth_l1_loss(normalized_distances(student), normalized_distances(teacher))
        loss = loss + distance_weight * distance_term
    if angle_weight > 0:
        angle_term = F.smooth_l1_loss(triplet_angles(student), triplet_angles(teacher))
        loss = loss + angle_weight * angle_term
    return loss


class RKDLoss(nn.Module):
    """Module form of :func:`rkd_loss`; stores the two term weights."""

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        check_non_negative("RKDLoss", "distance_weight", distance_weight)
        check_non_negative("RKDLoss", "angle_weight", angle_weight)
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
        return rkd_loss(
            student_embedding,
            teacher_embedding,
            distance_weight=self.distance_weight,
            angle_weight=self.angle_weight,
        )

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"


__all__ = ["RKDLoss", "normalized_distances", "rkd_loss", "triplet_angles"]
