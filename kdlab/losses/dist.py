r"""DIST: distillation by inter-class and intra-class correlation.

Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher",
NeurIPS 2022 (arXiv:2205.10536). Official code: ``hunto/image_classification_sota``,
``lib/models/losses/dist_kd.py`` (linked from ``hunto/DIST_KD``).

Instead of matching the teacher's probabilities exactly (KL), DIST asks the
student to keep their *relations*, measured by the Pearson correlation. With
:math:`P^s = \mathrm{softmax}(z^s / T)` and :math:`P^t = \mathrm{softmax}(z^t / T)`,
both (B, K):

.. math::

    \rho(a, b) = \frac{\langle a - \bar a,\; b - \bar b\rangle}
                      {\lVert a - \bar a\rVert\,\lVert b - \bar b\rVert + \epsilon},
    \qquad \epsilon = 10^{-8}

.. math::

    \mathcal{L}_{inter} = 1 - \frac{1}{B}\sum_{i=1}^{B} \rho(P^s_{i,:}, P^t_{i,:}),
    \qquad
    \mathcal{L}_{intra} = 1 - \frac{1}{K}\sum_{k=1}^{K} \rho(P^s_{:,k}, P^t_{:,k})

.. math::

    \mathcal{L}_{DIST} = T^2 \left(\beta\, \mathcal{L}_{inter} + \gamma\, \mathcal{L}_{intra}\right)

*Inter-class*: per sample, the correlation of the two class distributions;
*intra-class*: per class, the correlation of the probabilities that class gets
across the batch, so the intra term depends on the whole batch.

Official code: the :math:`T^2` factor on both terms, the :math:`\epsilon` added
to the product of the norms, and the defaults ``beta = gamma = tau = 1`` are
those of the official code (its CIFAR-100 recipe uses ``tau = 4``); where the
paper's text is less specific (it defines :math:`\rho` without
:math:`\epsilon`), kdlab follows the code. A row or column that is constant
(e.g. the intra term of a batch of one sample) has correlation 0, as in the
official code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlab.losses._checks import (
    check_min_batch,
    check_ndim,
    check_non_negative,
    check_positive,
    check_same_shape,
    upcast,
)

PEARSON_EPS = 1e-8


def dist_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> Tensor:
    r"""DIST: :math:`T^2 (\beta (1 - \bar\rho_{rows}) + \gamma (1 - \bar\rho_{columns}))` of the softmaxes.

    Args:
        student_logits: (B, K) student logits.
        teacher_logits: (B, K) teacher logits (detach them if the teacher is frozen).
        beta: weight of the inter-class (per-sample) relation term.
        gamma: weight of the intra-class (per-class, across the batch) relation term.
        temperature: softmax temperature T > 0.

    Returns:
        Scalar tensor (float32 for half/bf16 inputs).
    """
    fn = "dist_loss"
    check_ndim(fn, "student_logits", student_logits, 2, "(batch, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "student_logits", student_logits, 1)
    check_non_negative(fn, "beta", beta)
    check_non_negative(fn, "gamma", gamma)
    check_positive(fn, "temperature", temperature)

    student, teacher = upcast(student_logits, teacher_logits)
    p_student = torch.softmax(student / temperature, dim=1)
    p_teacher = torch.softmax(teacher / temperature, dim=1)
    inter = 1.0 - pearson_rows(p_student, p_teacher).mean()
    intra = 1.0 - pearson_rows(p_student.t(), p_teacher.t()).mean()
    return (beta * inter + gamma * intra) * temperature**2


def pearson_rows(a: Tensor, b: Tensor, eps: float = PEARSON_EPS) -> Tensor:
    r"""Row-wise Pearson correlation of two (N, D) tensors, shape (N,).

    :math:`\langle a - \bar a, b - \bar b\rangle / (\lVert a - \bar a\rVert \lVert b - \bar b\rVert + \epsilon)`,
    the means taken over each row (the official code's ``eps`` placement).
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class DISTLoss(nn.Module):
    """Module form of :func:`dist_loss`; stores beta, gamma and the temperature."""

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        check_non_negative("DISTLoss", "beta", beta)
        check_non_negative("DISTLoss", "gamma", gamma)
        check_positive("DISTLoss", "temperature", temperature)
        self.beta = beta
        self.gamma = gamma
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return dist_loss(student_logits, teacher_logits, beta=self.beta, gamma=self.gamma,
                         temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, temperature={self.temperature}"


__all__ = ["DISTLoss", "dist_loss"]
