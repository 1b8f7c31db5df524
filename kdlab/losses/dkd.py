r"""Decoupled knowledge distillation (DKD).

Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022.

The KD loss is split into a target-class part (TCKD) and a non-target part
(NCKD) that are weighted independently. With :math:`y` the target class and
softmax at temperature T:

.. math::

    b = [p_y,\; 1 - p_y], \qquad
    \hat p_k = \frac{\exp(z_k / T)}{\sum_{j \ne y} \exp(z_j / T)} \;(k \ne y)

.. math::

    \mathrm{TCKD} = \mathrm{KL}(b^t \,\|\, b^s), \qquad
    \mathrm{NCKD} = \mathrm{KL}(\hat p^t \,\|\, \hat p^s)

.. math::

    \mathcal{L}_{DKD} = T^2 \cdot \frac{1}{B} \sum_b
        \left(\alpha\, \mathrm{TCKD}_b + \beta\, \mathrm{NCKD}_b\right)

The target class is removed from the non-target softmax exactly (the logits are
gathered without it) rather than masked with a large negative constant, which
is equivalent and does not depend on the logit scale.

The official recipe ramps the whole DKD term up linearly over the first
epochs (``min(epoch / warmup, 1)``, warmup 20 on CIFAR-100); that schedule
belongs to the method, not to this function.
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
    check_targets,
    shape_str,
    upcast,
)


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> Tensor:
    r"""Decoupled KD: :math:`T^2 (\alpha\,\mathrm{TCKD} + \beta\,\mathrm{NCKD})`, batch mean.

    Args:
        student_logits: (B, K) student logits, K >= 2.
        teacher_logits: (B, K) teacher logits.
        targets: (B,) integer ground-truth classes in [0, K).
        alpha: weight of the target-class term (TCKD).
        beta: weight of the non-target term (NCKD).
        temperature: softmax temperature T > 0.

    Returns:
        Scalar tensor.
    """
    fn = "dkd_loss"
    check_ndim(fn, "student_logits", student_logits, 2, "(batch, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "student_logits", student_logits, 1)
    batch_size, num_classes = student_logits.shape
    if num_classes < 2:
        raise ValueError(f"{fn}: needs at least 2 classes, student_logits has shape {shape_str(student_logits)}")
    check_targets(fn, targets, batch_size, num_classes)
    check_positive(fn, "temperature", temperature)
    check_non_negative(fn, "alpha", alpha)
    check_non_negative(fn, "beta", beta)

    student, teacher = upcast(student_logits, teacher_logits)
    student, teacher = student / temperature, teacher / temperature
    target_mask = torch.zeros_like(student, dtype=torch.bool)
    target_mask[torch.arange(batch_size, device=student.device), targets] = True

    tckd = _binary_kl(student, teacher, target_mask)
    nckd = _non_target_kl(student, teacher, target_mask)
    return (alpha * tckd + beta * nckd).mean() * temperature**2


def _non_target_logits(logits: Tensor, target_mask: Tensor) -> Tensor:
    """(B, K) -> (B, K-1): each row's logits without its target class, order kept."""
    return logits[~target_mask].view(logits.shape[0], logits.shape[1] - 1)


def _binary_kl(student: Tensor, teacher: Tensor, target_mask: Tensor) -> Tensor:
    """Per-row KL between [p_target, 1 - p_target] of teacher and student, shape (B,).

    Log-probabilities come from log-sum-exps so that ``log(1 - p_target)`` stays
    accurate when p_target is close to 1.
    """

    def log_binary(logits: Tensor) -> Tensor:
        log_total = torch.logsumexp(logits, dim=1)
        log_target = logits[target_mask] - log_total
        log_rest = torch.logsumexp(_non_target_logits(logits, target_mask), dim=1) - log_total
        return torch.stack([log_target, log_rest], dim=1)

    log_b_student = log_binary(student)
    log_b_teacher = log_binary(teacher)
    return (log_b_teacher.exp() * (log_b_teacher - log_b_student)).sum(dim=1)


def _non_target_kl(student: Tensor, teacher: Tensor, target_mask: Tensor) -> Tensor:
    """Per-row KL between the softmaxes over the non-target classes only, shape (B,)."""
    log_p_student = torch.log_softmax(_non_target_logits(student, target_mask), dim=1)
    log_p_teacher = torch.log_softmax(_non_target_logits(teacher, target_mask), dim=1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)


class DKDLoss(nn.Module):
    """Module form of :func:`dkd_loss`; stores alpha, beta and the temperature."""

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> None:
        super().__init__()
        check_non_negative("DKDLoss", "alpha", alpha)
        check_non_negative("DKDLoss", "beta", beta)
        check_positive("DKDLoss", "temperature", temperature)
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        return dkd_loss(
            student_logits,
            teacher_logits,
            targets,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}"


__all__ = ["DKDLoss", "dkd_loss"]
