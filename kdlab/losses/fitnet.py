r"""FitNets hint loss.

Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep
Nets", ICLR 2015.

.. math::

    \mathcal{L}_{hint} = \frac{1}{N} \sum \left(r(f^s) - f^t\right)^2

where :math:`r` is a learned regressor mapping the student's guided layer to
the teacher's hint layer and N is the number of elements. The regressor (a 1x1
or 3x3 convolution, or a linear layer) is owned by the method; this function
receives its output.
"""

from __future__ import annotations

from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_min_ndim, check_same_shape, upcast


def fitnet_loss(student_hint: Tensor, teacher_hint: Tensor) -> Tensor:
    """Mean squared error between the regressed student feature and the teacher hint.

    Args:
        student_hint: (B, ...) regressor output for the student.
        teacher_hint: teacher feature of the same shape.

    Returns:
        Scalar tensor: mean over all elements.
    """
    fn = "fitnet_loss"
    check_min_ndim(fn, "student_hint", student_hint, 1, "(batch, ...)")
    check_same_shape(fn, "student_hint", student_hint, "teacher_hint", teacher_hint)
    check_min_batch(fn, "student_hint", student_hint, 1)
    student, teacher = upcast(student_hint, teacher_hint)
    return (student - teacher).pow(2).mean()


class FitNetLoss(nn.Module):
    """Module form of :func:`fitnet_loss` (no hyper-parameters; the regressor lives in the method)."""

    def forward(self, student_hint: Tensor, teacher_hint: Tensor) -> Tensor:
        return fitnet_loss(student_hint, teacher_hint)


__all__ = ["FitNetLoss", "fitnet_loss"]
