r"""OFA-KD's loss with adaptive target enhancement (Hao et al., NeurIPS 2023).

"One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge Distillation",
arXiv:2310.19444. Official code: github.com/Hao840/OFAKD, ``distillers/ofa.py`` (``ofa_loss``).

OFA-KD compares logits only: the student's final logits and the outputs of small branches that
project its intermediate features into the logit space, each against the teacher's logits. With
:math:`p^s = \mathrm{softmax}(z^s / T)`, :math:`p^t = \mathrm{softmax}(z^t / T)`, :math:`m` the
one-hot label and :math:`\epsilon` the exponent (the paper's modulating parameter, ``--ofa-eps``
in the code):

.. math::

    \mathcal{L}_{OFA} = \frac{1}{B} \sum_b \sum_k
        -\left[(p^t_{b,k} + m_{b,k})^{\epsilon} - m_{b,k}\right] \log p^s_{b,k}

so the target class is weighted :math:`(1 + p^t_y)^{\epsilon} - 1` and every other class
:math:`(p^t_k)^{\epsilon}`. With :math:`\epsilon = 1` this is the cross-entropy to the teacher's
probabilities (KD without the :math:`T^2` factor, up to the teacher's entropy); :math:`\epsilon > 1`
enlarges the target class's share when the teacher is confident in it. The formula is the official
code's; ``log p^s`` is taken with ``log_softmax`` (the code takes ``log`` of the softmax, which is
the same number where it does not underflow). No :math:`T^2` factor, as the code (its default T is 1).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import (
    check_min_batch,
    check_ndim,
    check_positive,
    check_same_shape,
    check_targets,
    upcast,
)


def ofa_loss(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, eps: float = 1.0, temperature: float = 1.0
) -> Tensor:
    r"""OFA loss :math:`-\frac1B\sum_{b,k} [(p^t + m)^{\epsilon} - m]\,\log p^s` (see the module docstring).

    Args:
        student_logits: (B, K) student logits (its final head, or a branch's output).
        teacher_logits: (B, K) teacher logits (detach them if the teacher is frozen).
        targets: (B,) integer labels in [0, K): the one-hot mask ``m``.
        eps: exponent > 0 of the target enhancement (official ``ofa_eps``: 1 on CIFAR-100, 1.5 in the
            README's ImageNet example).
        temperature: T > 0 of both softmaxes (official ``ofa_temperature``, 1).

    Returns:
        Scalar tensor (float32 for half/bf16 inputs).
    """
    fn = "ofa_loss"
    check_ndim(fn, "student_logits", student_logits, 2, "(batch, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "student_logits", student_logits, 1)
    check_targets(fn, targets, student_logits.shape[0], student_logits.shape[1])
    check_positive(fn, "eps", eps)
    check_positive(fn, "temperature", temperature)
    student, teacher = upcast(student_logits, teacher_logits)
    log_p_student = F.log_softmax(student / temperature, dim=1)
    p_teacher = F.softmax(teacher / temperature, dim=1)
    mask = F.one_hot(targets, student.shape[1]).to(student.dtype)
    weights = (p_teacher + mask) ** eps - mask
    return -(weights * log_p_student).sum(dim=1).mean()


class OFALoss(nn.Module):
    """Module form of :func:`ofa_loss`; stores ``eps`` and the temperature."""

    def __init__(self, eps: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        check_positive("OFALoss", "eps", eps)
        check_positive("OFALoss", "temperature", temperature)
        self.eps = eps
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        return ofa_loss(student_logits, teacher_logits, targets, eps=self.eps, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, temperature={self.temperature}"


__all__ = ["OFALoss", "ofa_loss"]
