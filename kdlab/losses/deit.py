r"""DeiT's distillation through a distillation token (Touvron et al., ICML 2021).

"Training data-efficient image transformers & distillation through attention", arXiv:2012.12877.

A distilled DeiT carries a second prefix token, the distillation token, with its own head. With
:math:`z^{cls}` the class token's logits, :math:`z^{dist}` the distillation token's, :math:`z^t` the
teacher's and :math:`y` the label, the class head learns from the labels and the distillation head
from the teacher:

.. math::

    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}_\varepsilon(z^{cls}, y) + \alpha\, \mathcal{L}_{dist}

hard distillation (the teacher's decision as a label):

.. math::

    \mathcal{L}_{dist} = \frac{1}{B} \sum_b -\log \mathrm{softmax}(z^{dist}_b)_{\arg\max_k z^t_{b,k}}

soft distillation (KL at temperature :math:`T`):

.. math::

    \mathcal{L}_{dist} = \frac{T^2}{N} \sum_{b,k} p^t_{b,k} (\log p^t_{b,k} - \log p^{dist}_{b,k}),
    \qquad p = \mathrm{softmax}(z / T)

:math:`N` follows the official code (``losses.py``: ``kl_div(..., reduction='sum') * T * T /
outputs_kd.numel()``): the number of logits :math:`B K`, "the legacy PyTorch behaviour" its comment
names (``normalization="elements"``); ``normalization="batch"`` divides by :math:`B` instead (the
per-sample KL of :func:`kdlab.losses.kd_loss`, which the official comment says was also tried).

:math:`\mathrm{CE}_\varepsilon` is cross-entropy with label smoothing :math:`\varepsilon` (DeiT's
``--smoothing 0.1`` through timm's ``LabelSmoothingCrossEntropy``, which equals
:math:`(1-\varepsilon)\,\mathrm{CE} + \varepsilon \cdot \mathrm{mean}_k(-\log p_k)`, the same as
``torch.nn.functional.cross_entropy(label_smoothing=ε)``). The official defaults are
``alpha = 0.5`` and ``tau = 1.0``. At evaluation DeiT averages the two heads' logits; that belongs to
the model, not to this loss.
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
from kdlab.losses.kd import softened_kl

#: how DeiT's distillation head learns from the teacher
DISTILLATION_KINDS = ("hard", "soft")
#: what the soft KL sum is divided by: B*K (the official code) or B
SOFT_NORMALIZATIONS = ("elements", "batch")


def _check_choice(fn: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{fn}: {name} must be one of {', '.join(allowed)}, got {value!r}")


def deit_distillation_loss(
    distillation_logits: Tensor,
    teacher_logits: Tensor,
    distillation: str = "hard",
    temperature: float = 1.0,
    normalization: str = "elements",
) -> Tensor:
    r"""The distillation head's loss :math:`\mathcal{L}_{dist}` (see the module docstring).

    Args:
        distillation_logits: (B, K) logits of the distillation token's head.
        teacher_logits: (B, K) teacher logits (detach them if the teacher is frozen).
        distillation: ``"hard"`` (CE against the teacher's argmax) or ``"soft"`` (KL at ``temperature``).
        temperature: T > 0 of soft distillation (unused by hard distillation).
        normalization: soft only: ``"elements"`` divides the KL sum by B*K (official), ``"batch"`` by B.

    Returns:
        Scalar tensor (float32 for half/bf16 inputs).
    """
    fn = "deit_distillation_loss"
    check_ndim(fn, "distillation_logits", distillation_logits, 2, "(batch, classes)")
    check_same_shape(fn, "distillation_logits", distillation_logits, "teacher_logits", teacher_logits)
    check_min_batch(fn, "distillation_logits", distillation_logits, 1)
    _check_choice(fn, "distillation", distillation, DISTILLATION_KINDS)
    _check_choice(fn, "normalization", normalization, SOFT_NORMALIZATIONS)
    check_positive(fn, "temperature", temperature)
    student, teacher = upcast(distillation_logits, teacher_logits)
    if distillation == "hard":
        return F.cross_entropy(student, teacher.argmax(dim=1))
    kl_sum = softened_kl(student, teacher, temperature).sum()
    count = student.numel() if normalization == "elements" else student.shape[0]
    return kl_sum * temperature**2 / count


def deit_loss_parts(
    class_logits: Tensor,
    distillation_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    distillation: str = "hard",
    temperature: float = 1.0,
    label_smoothing: float = 0.1,
    normalization: str = "elements",
) -> dict[str, Tensor]:
    """The two parts of DeiT's loss, unweighted: ``{"ce": class head vs labels, "distillation": ...}``.

    Args:
        class_logits: (B, K) logits of the class token's head.
        distillation_logits: (B, K) logits of the distillation token's head.
        teacher_logits: (B, K) teacher logits.
        targets: (B,) integer labels in [0, K).
        distillation, temperature, normalization: as :func:`deit_distillation_loss`.
        label_smoothing: epsilon in [0, 1) of the class head's cross-entropy.
    """
    fn = "deit_loss"
    check_ndim(fn, "class_logits", class_logits, 2, "(batch, classes)")
    check_same_shape(fn, "class_logits", class_logits, "distillation_logits", distillation_logits)
    check_targets(fn, targets, class_logits.shape[0], class_logits.shape[1])
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1), got {label_smoothing}")
    (logits,) = upcast(class_logits)
    return {
        "ce": F.cross_entropy(logits, targets, label_smoothing=label_smoothing),
        "distillation": deit_distillation_loss(
            distillation_logits, teacher_logits, distillation, temperature, normalization
        ),
    }


def deit_loss(
    class_logits: Tensor,
    distillation_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    distillation: str = "hard",
    alpha: float = 0.5,
    temperature: float = 1.0,
    label_smoothing: float = 0.1,
    normalization: str = "elements",
) -> Tensor:
    r"""DeiT's loss :math:`(1 - \alpha)\,\mathrm{CE}_\varepsilon(z^{cls}, y) + \alpha\,\mathcal{L}_{dist}`.

    Arguments as :func:`deit_loss_parts`; ``alpha`` in [0, 1] weighs the distillation head's part.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"deit_loss: alpha must be in [0, 1], got {alpha}")
    parts = deit_loss_parts(
        class_logits, distillation_logits, teacher_logits, targets, distillation, temperature, label_smoothing,
        normalization,
    )
    return (1.0 - alpha) * parts["ce"] + alpha * parts["distillation"]


class DeiTLoss(nn.Module):
    """Module form of :func:`deit_loss`; stores the hyper-parameters (official defaults: hard, 0.5, 1.0, 0.1)."""

    def __init__(
        self,
        distillation: str = "hard",
        alpha: float = 0.5,
        temperature: float = 1.0,
        label_smoothing: float = 0.1,
        normalization: str = "elements",
    ) -> None:
        super().__init__()
        _check_choice("DeiTLoss", "distillation", distillation, DISTILLATION_KINDS)
        _check_choice("DeiTLoss", "normalization", normalization, SOFT_NORMALIZATIONS)
        check_positive("DeiTLoss", "temperature", temperature)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"DeiTLoss: alpha must be in [0, 1], got {alpha}")
        self.distillation = distillation
        self.alpha = alpha
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.normalization = normalization

    def forward(
        self, class_logits: Tensor, distillation_logits: Tensor, teacher_logits: Tensor, targets: Tensor
    ) -> Tensor:
        return deit_loss(
            class_logits, distillation_logits, teacher_logits, targets, self.distillation, self.alpha,
            self.temperature, self.label_smoothing, self.normalization,
        )

    def extra_repr(self) -> str:
        return (
            f"distillation={self.distillation}, alpha={self.alpha}, temperature={self.temperature}, "
            f"label_smoothing={self.label_smoothing}, normalization={self.normalization}"
        )


__all__ = ["DISTILLATION_KINDS", "DeiTLoss", "SOFT_NORMALIZATIONS", "deit_distillation_loss", "deit_loss",
           "deit_loss_parts"]
