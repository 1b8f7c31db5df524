"""Recording submodule activations during one forward pass, without editing the library's code.

Hooks are registered only for the duration of a ``with`` block, so a plain
``forward`` pays nothing, a deep-copied model carries no hook bound to its
original, and nothing leaks if the forward raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class ActivationRecorder:
    """Outputs and inputs of named submodules, recorded by forward hooks.

    - ``outputs[name]``: the module's output (the last call's, if it runs more than once);
    - ``inputs[name]``: the module's first positional input, cloned when the
      module is known to modify it in place (an ``inplace=True`` ReLU), so the
      recorded tensor keeps the value it had before the call.
    """

    def __init__(self, root: nn.Module, output_of: Sequence[str] = (), input_of: Sequence[str] = ()) -> None:
        self.root = root
        self.output_of = list(output_of)
        self.input_of = list(input_of)
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, torch.Tensor] = {}

    @contextmanager
    def recording(self) -> Iterator[ActivationRecorder]:
        self.outputs, self.inputs = {}, {}
        modules = dict(self.root.named_modules())
        handles = []
        try:
            for name in self.output_of:
                handles.append(_module(modules, name).register_forward_hook(self._output_hook(name)))
            for name in self.input_of:
                module = _module(modules, name)
                handles.append(module.register_forward_pre_hook(self._input_hook(name, _mutates_input(module))))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _output_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.outputs[name] = output

        return hook

    def _input_hook(self, name: str, clone: bool) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor):
                self.inputs[name] = args[0].clone() if clone else args[0]

        return hook


def _module(modules: dict[str, nn.Module], name: str) -> nn.Module:
    if name not in modules:
        raise ValueError(f"no submodule named {name!r} (the model has e.g. {', '.join(list(modules)[1:8])})")
    return modules[name]


def _mutates_input(module: nn.Module) -> bool:
    return bool(getattr(module, "inplace", False))
