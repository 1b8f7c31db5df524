r"""Variational information distillation (VID).

Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information Distillation for
Knowledge Transfer", CVPR 2019.

VID maximises a variational lower bound of the mutual information between a
teacher feature :math:`t` and a student feature by fitting a Gaussian
:math:`q(t \mid s) = \mathcal{N}(\mu(s), \mathrm{diag}(v))` whose mean
:math:`\mu(s)` is regressed from the student feature and whose variance is one
learned value per teacher channel,

.. math::

    v_c = \mathrm{softplus}(\alpha_c) + \epsilon = \log(1 + e^{\alpha_c}) + \epsilon.

The loss is the mean negative log-likelihood without the constant
:math:`\tfrac12 \log 2\pi`:

.. math::

    \mathcal{L}_{VID} = \frac{1}{B C H W} \sum_{b,c,h,w}
        \frac{1}{2} \left( \frac{(\mu_{bchw} - t_{bchw})^2}{v_c} + \log v_c \right)

With several layers (lists of ``pred_mean`` / ``teacher_features`` / ``log_scale``)
the per-layer values are summed.

Official code vs paper: this is RepDistiller's ``VIDLoss`` (adapted from the
authors' code), which *averages* over batch, channels and positions where the
paper sums the log-likelihood over channels and positions, and gives every layer
weight 1 (the paper weights layers with lambda). The regressor :math:`\mu`
(1x1 conv - ReLU - 1x1 conv - ReLU - 1x1 conv, no biases, mid channels = teacher
channels), the ``log_scale`` parameters :math:`\alpha` (initialised to
:math:`\log(e^{5 - \epsilon} - 1)`, i.e. v = 5) and the pooling of the larger
map to the smaller one (applied to the student feature *before* the regressor)
belong to the method; this function receives the regressed mean.

Shapes: ``pred_mean`` and ``teacher_features`` are (B, C, H, W) with identical
shapes, ``log_scale`` is (C,).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_min_batch, check_ndim, check_positive, check_same_shape, shape_str, upcast

Layers = Union[Tensor, Sequence[Tensor]]


def vid_variance(log_scale: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-channel variance ``softplus(log_scale) + eps`` (float32 at least)."""
    (log_scale,) = upcast(log_scale)
    return F.softplus(log_scale) + eps


def vid_log_scale_init(variance: float = 5.0, eps: float = 1e-5) -> float:
    """The ``log_scale`` value whose variance ``softplus(.) + eps`` equals ``variance`` (RepDistiller's init)."""
    if not variance > eps:
        raise ValueError(f"vid_log_scale_init: variance must be > eps={eps}, got {variance}")
    return math.log(math.expm1(variance - eps))


def _vid_layer(fn: str, where: str, pred_mean: Tensor, teacher: Tensor, log_scale: Tensor, eps: float) -> Tensor:
    check_ndim(fn, f"pred_mean{where}", pred_mean, 4, "(batch, channels, height, width)")
    check_ndim(fn, f"teacher_features{where}", teacher, 4, "(batch, channels, height, width)")
    check_same_shape(fn, f"pred_mean{where}", pred_mean, f"teacher_features{where}", teacher)
    check_min_batch(fn, f"pred_mean{where}", pred_mean, 1)
    if log_scale.ndim != 1 or log_scale.shape[0] != teacher.shape[1]:
        raise ValueError(
            f"{fn}: log_scale{where} must have shape ({teacher.shape[1]},), one value per channel of "
            f"teacher_features{where} {shape_str(teacher)}, got {shape_str(log_scale)}"
        )
    mean, target, scale = upcast(pred_mean, teacher, log_scale)
    variance = (F.softplus(scale) + eps).view(1, -1, 1, 1)
    return (0.5 * ((mean - target).pow(2) / variance + variance.log())).mean()


def vid_loss(pred_mean: Layers, teacher_features: Layers, log_scale: Layers, eps: float = 1e-5) -> Tensor:
    """VID: Gaussian negative log-likelihood of the teacher feature, averaged over (B, C, H, W).

    Args:
        pred_mean: (B, C, H, W) regressed mean from the student feature, or a list of them (one per layer).
        teacher_features: (B, C, H, W) teacher feature(s), same shape(s) as ``pred_mean``.
        log_scale: (C,) unconstrained per-channel parameter(s); variance = softplus + eps.
        eps: floor of the variance, > 0 (official: 1e-5).

    Returns:
        Scalar tensor: the per-layer means, summed over layers.
    """
    fn = "vid_loss"
    check_positive(fn, "eps", eps)
    if isinstance(pred_mean, Tensor) and isinstance(teacher_features, Tensor) and isinstance(log_scale, Tensor):
        return _vid_layer(fn, "", pred_mean, teacher_features, log_scale, eps)
    if isinstance(pred_mean, Tensor) or isinstance(teacher_features, Tensor) or isinstance(log_scale, Tensor):
        raise ValueError(f"{fn}: pred_mean, teacher_features and log_scale must all be tensors or all be lists")
    if not (len(pred_mean) == len(teacher_features) == len(log_scale)) or len(pred_mean) == 0:
        raise ValueError(
            f"{fn}: pred_mean, teacher_features and log_scale must be non-empty lists of equal length, got "
            f"{len(pred_mean)}, {len(teacher_features)} and {len(log_scale)} layers"
        )
    values = [
        _vid_layer(fn, f"[{i}]", mean, teacher, scale, eps)
        for i, (mean, teacher, scale) in enumerate(zip(pred_mean, teacher_features, log_scale))
    ]
    return torch.stack(values).sum()


class VIDLoss(nn.Module):
    """Module form of :func:`vid_loss`; stores eps (the regressor and log_scale belong to the method)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        check_positive("VIDLoss", "eps", eps)
        self.eps = eps

    def forward(self, pred_mean: Layers, teacher_features: Layers, log_scale: Layers) -> Tensor:
        return vid_loss(pred_mean, teacher_features, log_scale, eps=self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


__all__ = ["VIDLoss", "vid_log_scale_init", "vid_loss", "vid_variance"]
