"""Refusing NaN/Inf steps without a host-device synchronisation per step.

The step-wise check (``trainer.finite_check=step``) reads one flag to the host before every
optimizer step: free on a CPU, a pipeline stall on a GPU. The deferred check keeps everything on
the device:

- the optimizer is a fused one and receives ``found_inf`` (as under a GradScaler): a step whose
  loss or gradient is not finite changes nothing, not even the optimizer's state;
- which terms and parameters went bad, and the first such step, accumulate in device tensors;
- the host reads them every ``trainer.log_every`` steps and before any checkpoint, and raises then.

So a bad step never lands, and no checkpoint is written after one; training only runs on for at
most ``log_every - 1`` good steps before stopping with the same message as the step-wise check.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn


def prepare_optimizer_for_skips(optimizer: torch.optim.Optimizer) -> None:
    """Give every SGD parameter a zero momentum buffer up front.

    torch's fused SGD creates the buffers uninitialised on the first step and skips filling them
    when ``found_inf`` is set, so a skipped first step would leave garbage behind. A zero buffer
    gives the first step exactly the update it would have had (buffer = gradient, dampening 0).
    """
    if not isinstance(optimizer, torch.optim.SGD):
        return
    for group in optimizer.param_groups:
        if group["momentum"] == 0:
            continue
        if group.get("dampening", 0) != 0:
            raise ValueError("the deferred NaN/Inf check needs SGD without dampening")
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class DeferredFiniteCheck:
    """Device-side record of non-finite steps; :meth:`report` is the only host read."""

    def __init__(self, optimizer: torch.optim.Optimizer, named_params: Sequence[tuple[str, nn.Parameter]],
                 device: torch.device) -> None:
        self.optimizer = optimizer
        self.device = device
        self._param_names = [name for name, _ in named_params]
        self._position = {id(p): i for i, (_, p) in enumerate(named_params)}
        self._index_cache: dict[tuple[int, ...], torch.Tensor] = {}
        self._bad_params = torch.zeros(len(self._param_names), dtype=torch.bool, device=device)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
        optimizer.found_inf = self.found_inf  # type: ignore[attr-defined]  # read by fused optimizers' step()
        self._first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self._bad_terms: dict[str, torch.Tensor] = {}
        self._bad_total = torch.zeros((), dtype=torch.bool, device=device)

    def record(self, step_index: int, loss: torch.Tensor, terms: dict[str, torch.Tensor],
               params: Sequence[torch.Tensor], norms: Sequence[torch.Tensor], grad_norm: torch.Tensor) -> None:
        """Flag this step (no host read); the optimizer's next ``step()`` skips it when flagged."""
        bad = ~(torch.isfinite(loss).all() & torch.isfinite(grad_norm))
        self.found_inf.copy_(bad)
        self._first_bad.copy_(torch.where(bad & (self._first_bad < 0), step_index, self._first_bad))
        self._bad_total |= ~torch.isfinite(loss).all()
        for key, value in terms.items():
            flag = ~torch.isfinite(value).all()
            self._bad_terms[key] = self._bad_terms[key] | flag if key in self._bad_terms else flag
        if norms:
            positions = tuple(self._position[id(p)] for p in params)
            where = self._index_cache.get(positions)
            if where is None:  # built once per set of parameters with gradients (usually once)
                where = self._index_cache[positions] = torch.tensor(positions, device=self.device)
            self._bad_params[where] |= ~torch.isfinite(torch.stack(list(norms)))

    def report(self) -> Optional[tuple[int, str]]:
        """(first bad global step, what went bad), or None when every step so far was finite."""
        first = int(self._first_bad)  # the one host read
        if first < 0:
            return None
        bad_terms = [k for k, v in self._bad_terms.items() if bool(v)]
        if bad_terms:
            return first, f"loss term(s) {', '.join(bad_terms)}"
        if bool(self._bad_total):
            return first, "the total loss"
        names = [n for n, flag in zip(self._param_names, self._bad_params.tolist()) if flag]
        if names:
            shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
            return first, f"the gradient of {shown}"
        return first, "a gradient"
