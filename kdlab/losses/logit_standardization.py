r"""Logit standardisation, a Z-score pre-process of logit distillation losses.

Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge Distillation",
CVPR 2024 (arXiv:2403.01427). Official code: ``sunshangquan/logit-standardization-KD``
(``normalize`` in ``mdistiller/distillers/KD.py`` and ``DKD.py``).

Each row of logits is standardised over the class dimension before the
temperature softmax of KD / DKD, so the student matches the teacher's logit
*relations* rather than their range:

.. math::

    \mathcal{Z}(z)_k = \frac{z_k - \bar z}{\epsilon + \sigma(z)}, \qquad
    \bar z = \frac{1}{K}\sum_{j=1}^{K} z_j, \qquad
    \sigma(z) = \sqrt{\frac{1}{K-1}\sum_{j=1}^{K} (z_j - \bar z)^2}

The standard deviation is the official code's ``Tensor.std`` (unbiased,
:math:`1/(K-1)`), not the population (:math:`1/K`) one a Z-score is often
written with; the two differ by the factor :math:`\sqrt{K/(K-1)}`, which acts
like a slightly different temperature. :math:`\epsilon = 10^{-7}` is added to
it, also as the official code. Both logits (student and teacher) are
standardised; the (base) temperature is applied afterwards by the loss.
"""

from __future__ import annotations

from torch import Tensor, nn

from kdlab.losses._checks import check_min_ndim, check_non_negative, shape_str, upcast


def logit_standardize(logits: Tensor, eps: float = 1e-7) -> Tensor:
    r"""Z-score over the last (class) dimension: :math:`(z - \bar z) / (\epsilon + \sigma_{unbiased}(z))`.

    Args:
        logits: (..., K) logits, K >= 2 (typically (B, K)).
        eps: added to the standard deviation (the official code's 1e-7).

    Returns:
        Tensor of the same shape (float32 for half/bf16 inputs).
    """
    fn = "logit_standardize"
    check_min_ndim(fn, "logits", logits, 1, "(..., classes)")
    if logits.shape[-1] < 2:
        raise ValueError(f"{fn}: needs at least 2 classes in the last dimension, logits has shape {shape_str(logits)}")
    check_non_negative(fn, "eps", eps)
    (values,) = upcast(logits)
    mean = values.mean(dim=-1, keepdim=True)
    std = values.std(dim=-1, keepdim=True)  # unbiased (K - 1), as the official code
    return (values - mean) / (eps + std)


class LogitStandardization(nn.Module):
    """Module form of :func:`logit_standardize`; stores eps."""

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        check_non_negative("LogitStandardization", "eps", eps)
        self.eps = eps

    def forward(self, logits: Tensor) -> Tensor:
        return logit_standardize(logits, eps=self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


__all__ = ["LogitStandardization", "logit_standardize"]
