r"""Correlation congruence (CC), as RepDistiller implements it.

Peng, Jin, Liu, Li, Wu, Liu, Zhou & Zhang, "Correlation Congruence for
Knowledge Distillation", ICCV 2019.

With :math:`e^s_i, e^t_i \in \mathbb{R}^D` the (projected) student and teacher
embeddings of the i-th sample of a batch of B and
:math:`d_i = |e^s_i - e^t_i|` (element-wise absolute difference),

.. math::

    \mathcal{L}_{CC} = \frac{1}{B - 1} \sum_{i=1}^{B-1} \langle d_i, d_{i+1} \rangle
                     = \frac{1}{B - 1} \sum_{i=1}^{B-1} \sum_{k=1}^{D} d_{i,k}\, d_{i+1,k}

Official code vs paper: the paper matches the B x B correlation matrices of the
batch, :math:`\psi(F^t)` and :math:`\psi(F^s)`, built with a (Taylor-approximated)
Gaussian-RBF kernel of pairs of samples, next to the instance-level KD term.
RepDistiller's ``Correlation`` (code from the CC authors, restructured) computes
the expression above instead: products of the absolute differences of
*consecutive* samples of the (shuffled) batch, summed over the D dimensions and
averaged over the B - 1 adjacent pairs. kdlab follows the code. The two 128-d
linear embeddings (RepDistiller's ``LinearEmbed``: a linear layer, no
L2 normalisation), on the pooled features ``feat[-1]``, belong to the method;
both are trained (the teacher's too), and RepDistiller weights the term 0.02.

Shapes: both embeddings (B, D), B >= 2.
"""

from __future__ import annotations

from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_same_shape, upcast


def cc_loss(student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
    """CC (RepDistiller's ``Correlation``): mean over i < B-1 of <|e_s[i] - e_t[i]|, |e_s[i+1] - e_t[i+1]|>.

    Args:
        student_embedding: (B, D) student embedding (after the method's projection).
        teacher_embedding: (B, D) teacher embedding (after the method's projection).

    Returns:
        Scalar tensor.
    """
    fn = "cc_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_ndim(fn, "teacher_embedding", teacher_embedding, 2, "(batch, dim)")
    check_same_shape(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    check_min_batch(fn, "student_embedding", student_embedding, 2)

    student, teacher = upcast(student_embedding, teacher_embedding)
    delta = (student - teacher).abs()
    return (delta[:-1] * delta[1:]).sum(dim=1).mean()


class CCLoss(nn.Module):
    """Module form of :func:`cc_loss` (no hyper-parameters)."""

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
        return cc_loss(student_embedding, teacher_embedding)


__all__ = ["CCLoss", "cc_loss"]
