r"""Vanilla knowledge distillation (Hinton, Vinyals & Dean, 2015).

"Distilling the Knowledge in a Neural Network", arXiv:1503.02531.

.. math::

    \mathcal{L}_{KD} = T^2 \cdot \frac{1}{B} \sum_{b=1}^{B}
        \sum_{k=1}^{K} p^t_{b,k} \left(\log p^t_{b,k} - \log p^s_{b,k}\right),
    \qquad p^t = \mathrm{softmax}(z^t / T),\; p^s = \mathrm{softmax}(z^s / T)

The :math:`T^2` factor keeps the gradient magnitude of the soft term roughly
independent of the temperature, so the weight against cross-entropy need not be
re-tuned when T changes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_positive, check_same_shape, upcast


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    r"""Hinton KD: :math:`T^2 \cdot \mathrm{KL}(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T))`.

    The KL is summed over classes and averaged over the batch.

    Args:
        student_logits: (B, K) student logits.
        teacher_logits: (B, K) teacher logits (detach them if the teacher is frozen).
        temperature: softening temperature T > 0.

    Returns:
        Scalar tensor (float32 for half/bf16 inputs).
    """
    fn = "kd_loss"
    check_ndim(fn, "student_logits", student_logits, 2, "(batch, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "student_logits", student_logits, 1)
    check_positive(fn, "temperature", temperature)
    student, teacher = upcast(student_logits, teacher_logits)
    return softened_kl(student, teacher, temperature).mean() * temperature**2


def softened_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    r"""Per-row :math:`\mathrm{KL}(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(s/T))`, shape (N,).

    Computed from log-probabilities on both sides so that a teacher probability
    that underflows to zero contributes exactly zero instead of ``0 * log 0``.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)


class KDLoss(nn.Module):
    """Module form of :func:`kd_loss`; stores the temperature."""

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        check_positive("KDLoss", "temperature", temperature)
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return kd_loss(student_logits, teacher_logits, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


__all__ = ["KDLoss", "kd_loss"]
