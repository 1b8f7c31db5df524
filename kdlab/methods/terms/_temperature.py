"""The ``temperature`` parameter of the logit terms: a number, or ``learnable`` (CTKD)."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from kdlab.methods.modules.learnable_temperature import LearnableTemperature
from kdlab.methods.terms._params import positive, positive_int

LEARNABLE = "learnable"


#: CTKD's official CIFAR-100 curriculum length (``--decay_loops 10``; 5 in its ImageNet script)
DEFAULT_CTKD_EPOCHS = 10


def temperature_setting(
    value: Any, ctkd_epochs: Optional[int] = None
) -> tuple[Optional[float], Optional[LearnableTemperature]]:
    """``(T, None)`` for a fixed temperature, ``(None, module)`` for ``temperature: learnable``.

    ``ctkd_epochs``: epochs over which the reversal strength rises to its maximum (learnable only).
    """
    if value == LEARNABLE:
        loops = DEFAULT_CTKD_EPOCHS if ctkd_epochs is None else positive_int("ctkd_epochs", ctkd_epochs)
        return None, LearnableTemperature(loops=loops)
    if isinstance(value, str):
        raise ValueError(f"temperature={value!r} must be a number > 0 or {LEARNABLE!r} (CTKD)")
    if ctkd_epochs is not None:
        raise ValueError(f"ctkd_epochs={ctkd_epochs!r} applies only with temperature: {LEARNABLE} (CTKD)")
    return positive("temperature", value), None


def current_temperature(
    fixed: Optional[float], learnable: Optional[LearnableTemperature], epoch: int
) -> Union[float, torch.Tensor]:
    """The temperature of this step: the fixed number, or the learnable one (a tensor with its gradient path)."""
    if learnable is None:
        assert fixed is not None
        return fixed
    return learnable(epoch)


def with_temperature_log(
    loss: torch.Tensor, temperature: Union[float, torch.Tensor]
) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
    """The term's output: the loss, plus ``temperature`` as a logged sub-term when it is learned."""
    if isinstance(temperature, torch.Tensor):
        return {"loss": loss, "temperature": temperature.detach().float()}
    return loss
