r"""Factor transfer (FT).

Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor
Transfer", NeurIPS 2018.

The teacher's deepest feature map goes through a *paraphraser* (an
auto-encoder trained beforehand to reconstruct it) whose encoder output is the
teacher factor :math:`F_t`; the student's map goes through a *translator*
trained with it, giving the student factor :math:`F_s`. Both are reduced as
RepDistiller's ``FactorTransfer`` does, to an L2-normalised spatial map of the
channel mean of :math:`f^{p_1}`:

.. math::

    \phi(F) = \frac{\mathrm{vec}(Q)}{\lVert \mathrm{vec}(Q) \rVert_2}, \qquad
    Q_{hw} = \frac{1}{C} \sum_{c=1}^{C} F_{c,h,w}^{\,p_1}

.. math::

    \mathcal{L}_{FT} = \frac{1}{B \cdot HW} \sum_{b,hw} \big| \phi(F_s)_{b,hw} - \phi(F_t)_{b,hw} \big|^{p_2}

with the absolute value for :math:`p_2 = 1` (the default) and the square for
:math:`p_2 = 2`. Channel counts may differ (the channel mean removes them);
when the spatial sizes differ the larger factor is adaptive-average-pooled to
the smaller, ``(min(H_s, H_t), min(W_s, W_t))``, before the reduction.

Official code vs paper: kdlab follows RepDistiller's ``distiller_zoo/FT.py``
(the code behind the CRD paper's FT numbers): the factor is reduced to the
channel mean of :math:`F^{p_1}` (:math:`p_1 = 2`) before the normalisation,
like an attention map. The paper, and its authors' code
(Jangho-Kim/Factor-Transfer-pytorch, ``utils.FT`` with ``nn.L1Loss``), instead
L2-normalise the whole flattened factor (C x H x W values) and take the mean
absolute difference, with no channel reduction; that form is not offered here.
RepDistiller pools to ``(H, H)`` of the smaller map, the same for square maps;
``p2`` other than 1 is ``(.)**p2`` there, kdlab accepts 1 and 2 only (odd powers
would give signed values). The paraphraser, the translator and their training
stages belong to the method (``kdlab.methods.init_stage``).

Shapes: student factor (B, C_s, H_s, W_s), teacher factor (B, C_t, H_t, W_t).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_same_dim, upcast

_P2 = (1, 2)


def _check_powers(fn: str, p1: int, p2: int) -> None:
    if isinstance(p1, bool) or not isinstance(p1, int) or p1 < 1:
        raise ValueError(f"{fn}: p1 must be an integer >= 1 (factor ** p1 of signed factor values), got {p1!r}")
    if isinstance(p2, bool) or p2 not in _P2:
        raise ValueError(f"{fn}: p2 must be 1 (mean absolute difference) or 2 (mean squared difference), got {p2!r}")


def _pool_to(feature: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(feature.shape[2:]) == size:
        return feature
    return F.adaptive_avg_pool2d(feature, size)


def _factor(feature: Tensor, p1: int) -> Tensor:
    """(B, C, H, W) -> (B, H*W): the channel mean of ``feature**p1``, flattened and L2-normalised."""
    return F.normalize(feature.pow(p1).mean(dim=1).flatten(1), dim=1)


def ft_loss(student_factor: Tensor, teacher_factor: Tensor, p1: int = 2, p2: int = 1) -> Tensor:
    """FT as RepDistiller: ``mean |phi(F_s) - phi(F_t)|**p2`` with ``phi`` the normalised channel mean of ``F**p1``.

    Args:
        student_factor: (B, C_s, H_s, W_s), the translator's output.
        teacher_factor: (B, C_t, H_t, W_t), the paraphraser encoder's output (detach it: it is not trained).
        p1: exponent of the factor before the channel mean, an integer >= 1 (official: 2).
        p2: 1 for the mean absolute difference (official), 2 for the mean squared difference.

    Returns:
        Scalar tensor: mean over the batch and the (common) spatial positions.
    """
    fn = "ft_loss"
    check_ndim(fn, "student_factor", student_factor, 4, "(batch, channels, height, width)")
    check_ndim(fn, "teacher_factor", teacher_factor, 4, "(batch, channels, height, width)")
    check_same_dim(fn, "student_factor", student_factor, "teacher_factor", teacher_factor, 0, "batch size")
    check_min_batch(fn, "student_factor", student_factor, 1)
    _check_powers(fn, p1, p2)

    student, teacher = upcast(student_factor, teacher_factor)
    size = (min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3]))
    difference = _factor(_pool_to(student, size), p1) - _factor(_pool_to(teacher, size), p1)
    if p2 == 1:
        return difference.abs().mean()
    return difference.pow(2).mean()


class FTLoss(nn.Module):
    """Module form of :func:`ft_loss` holding ``p1`` and ``p2``."""

    def __init__(self, p1: int = 2, p2: int = 1) -> None:
        super().__init__()
        _check_powers("FTLoss", p1, p2)
        self.p1, self.p2 = p1, p2

    def forward(self, student_factor: Tensor, teacher_factor: Tensor) -> Tensor:
        return ft_loss(student_factor, teacher_factor, self.p1, self.p2)

    def extra_repr(self) -> str:
        return f"p1={self.p1}, p2={self.p2}"


__all__ = ["FTLoss", "ft_loss"]
