r"""Normalized knowledge distillation (NKD).

Yang, Zeng, Li, Zhang, Yuan & Li, "From Knowledge Distillation to Self-Knowledge
Distillation: A Unified Approach with Normalized Loss and Customized Soft Labels",
ICCV 2023 (arXiv:2303.13005). Official code: ``yzd-v/cls_KD``,
``mmcls/models/dis_losses/nkd.py`` (branch 1.0; ``mmcls/distillation/losses/nkd.py``
on master).

KD's loss splits into a target part and a non-target part whose soft labels
do not sum to one; NKD normalises the non-target part. With :math:`y` the
target class, :math:`s = \mathrm{softmax}(z^s)` and :math:`t = \mathrm{softmax}(z^t)`
at temperature 1, and :math:`\hat s, \hat t` the softmaxes of the K - 1
non-target logits divided by the temperature T:

.. math::

    \hat s_k = \frac{\exp(z^s_k / T)}{\sum_{j \ne y} \exp(z^s_j / T)} \quad (k \ne y)

.. math::

    \mathcal{L}_{NKD} = -\frac{1}{B}\sum_{i=1}^{B} t_{i,y_i} \log s_{i,y_i}
        \;-\; \gamma\, T^2\, \frac{1}{B}\sum_{i=1}^{B} \sum_{k \ne y_i} \hat t_{i,k} \log \hat s_{i,k}

The first term (no :math:`T^2`) uses the teacher's target probability as a
soft target-class label; the second is a cross-entropy (not a KL: it keeps the
teacher's non-target entropy, so it is not zero when the logits agree).

Official code: the non-target softmax is over the K - 1 non-target classes, as
the corrected official code (cls_KD commits ``9466b3f`` / ``ad4876f``,
2023-10-10: ``scatter_(1, label, 0)``); earlier versions built the mask with
``scatter_(1, label, 1)``, which kept the target class in the "non-target"
softmax. The official code detaches the teacher's target probability; here,
as for every kdlab loss, teacher tensors are used as given (the method passes
a frozen teacher's logits, which is the same). The official code also accepts
soft (mixup) labels by taking their argmax; this function takes class indices.
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


def nkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    temperature: float = 1.0,
    gamma: float = 1.5,
) -> Tensor:
    r"""NKD: :math:`-t_y \log s_y - \gamma T^2 \sum_{k \ne y} \hat t_k \log \hat s_k`, batch mean.

    Args:
        student_logits: (B, K) student logits, K >= 2.
        teacher_logits: (B, K) teacher logits (detach them if the teacher is frozen).
        target: (B,) integer ground-truth classes in [0, K).
        temperature: temperature T > 0 of the non-target part (the target part uses 1).
        gamma: weight of the non-target part.

    Returns:
        Scalar tensor (float32 for half/bf16 inputs).
    """
    fn = "nkd_loss"
    check_ndim(fn, "student_logits", student_logits, 2, "(batch, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "student_logits", student_logits, 1)
    batch_size, num_classes = student_logits.shape
    if num_classes < 2:
        raise ValueError(f"{fn}: needs at least 2 classes, student_logits has shape {shape_str(student_logits)}")
    check_targets(fn, target, batch_size, num_classes, name="target")
    check_positive(fn, "temperature", temperature)
    check_non_negative(fn, "gamma", gamma)

    student, teacher = upcast(student_logits, teacher_logits)
    index = target.to(device=student.device, dtype=torch.long).unsqueeze(1)
    log_s_target = torch.log_softmax(student, dim=1).gather(1, index).squeeze(1)
    t_target = torch.softmax(teacher, dim=1).gather(1, index).squeeze(1)
    target_part = -(t_target * log_s_target).mean()

    keep = torch.ones_like(student, dtype=torch.bool).scatter_(1, index, False)
    student_rest = student[keep].view(batch_size, num_classes - 1)
    teacher_rest = teacher[keep].view(batch_size, num_classes - 1)
    log_s_rest = torch.log_softmax(student_rest / temperature, dim=1)
    t_rest = torch.softmax(teacher_rest / temperature, dim=1)
    non_target_part = -(t_rest * log_s_rest).sum(dim=1).mean()
    return target_part + gamma * temperature**2 * non_target_part


class NKDLoss(nn.Module):
    """Module form of :func:`nkd_loss`; stores the temperature and gamma."""

    def __init__(self, temperature: float = 1.0, gamma: float = 1.5) -> None:
        super().__init__()
        check_positive("NKDLoss", "temperature", temperature)
        check_non_negative("NKDLoss", "gamma", gamma)
        self.temperature = temperature
        self.gamma = gamma

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor) -> Tensor:
        return nkd_loss(student_logits, teacher_logits, target, temperature=self.temperature, gamma=self.gamma)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gamma={self.gamma}"


__all__ = ["NKDLoss", "nkd_loss"]
