r"""CTKD's learnable distillation temperature (Li et al., "Curriculum Temperature for Knowledge
Distillation", AAAI 2023), as the official code (zhengli97/CTKD, ``models/temp_global.py``,
``train_student.py``) runs its global temperature.

One scalar parameter :math:`\theta` (initialised to 1) gives the temperature

.. math::

    T = T_{start} + T_{range} \cdot \sigma(\theta)

(official ``t_start`` 1, ``t_end`` 20, so :math:`T \approx 15.6` at the start). :math:`\theta`
reaches the distillation loss through a gradient-reversal layer: the forward pass is the
identity, the backward pass multiplies the gradient by :math:`-\lambda`, so the optimiser
*raises* the distillation loss w.r.t. the temperature while the student lowers it. The strength
follows the cosine curriculum of the official script, evaluated once per 1-based epoch e:

.. math::

    \lambda(e) = \lambda_{max} \cdot \frac{1 - \cos(\pi \min(e, L) / L)}{2}

from about 0 to :math:`\lambda_{max}` (1) over the first L (10) epochs, then constant. (The
official code writes this as a ``CosineDecay`` from 0 to -1 and a layer that multiplies by that
negative value; the product is the same.) :math:`\theta` is an ordinary trainable parameter:
the optimiser updates it with the student's learning rate and weight decay, as the official
code puts it into the student's SGD.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; ``-strength * grad`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:  # type: ignore[override]
        ctx.strength = strength
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * (-ctx.strength), None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """``x`` unchanged; its gradient multiplied by ``-strength`` on the way back."""
    return _ReverseGradient.apply(x, float(strength))


def reversal_strength(epoch: int, loops: float = 10.0, maximum: float = 1.0) -> float:
    r"""The curriculum :math:`\lambda(e) = \lambda_{max} (1 - \cos(\pi \min(e, L) / L)) / 2` at 1-based epoch ``epoch``."""
    if loops <= 0:
        return float(maximum)
    progress = min(max(epoch, 0), loops) / loops
    return float(maximum) * (1.0 - math.cos(math.pi * progress)) / 2.0


class LearnableTemperature(nn.Module):
    """CTKD's global temperature: ``start + span * sigmoid(theta)`` behind a gradient-reversal layer."""

    def __init__(self, start: float = 1.0, span: float = 20.0, loops: float = 10.0, maximum: float = 1.0) -> None:
        super().__init__()
        self.start, self.span, self.loops, self.maximum = float(start), float(span), float(loops), float(maximum)
        self.theta = nn.Parameter(torch.ones(1))

    def strength(self, epoch: int) -> float:
        """The reversal strength during 0-based trainer epoch ``epoch`` (the official loop counts from 1)."""
        return reversal_strength(epoch + 1, self.loops, self.maximum)

    def forward(self, epoch: int) -> torch.Tensor:
        """The temperature, a 0-d float32 tensor that carries the reversed gradient to ``theta``."""
        theta = reverse_gradient(self.theta, self.strength(epoch))
        return (self.start + self.span * torch.sigmoid(theta)).reshape(())

    def extra_repr(self) -> str:
        return f"start={self.start}, span={self.span}, loops={self.loops}, maximum={self.maximum}"


__all__ = ["LearnableTemperature", "reversal_strength", "reverse_gradient"]
