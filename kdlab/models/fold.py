"""Fold inference-mode BatchNorm into the convolution that feeds it.

A frozen network's BatchNorm is an affine map per channel, so a convolution followed by it is one
convolution with rescaled weights and a bias:

    BN(W * x + b) = gamma * (W * x + b - mu) / sqrt(var + eps) + beta
                  = (s W) * x + s (b - mu) + beta,      s = gamma / sqrt(var + eps)

which saves one pass over every feature map: on this project's CPUs the resnet56 teacher's bf16
forward runs 10-40% faster, its fp32 forward 0-12%. Only for networks that never train again
(the teacher).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class FoldResult:
    """A folded copy of a network, or the reason nothing was folded."""

    model: nn.Module
    folded: int
    reason: str = ""


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv, batchnorm) names where the batchnorm's input is exactly the conv's output.

    Found by running ``example`` with hooks rather than by reading the code, so it works for any
    network built from modules; a module called more than once per forward (shared weights) is
    left alone.
    """
    calls: dict[str, int] = {}
    produced_by: dict[int, str] = {}
    keep_alive: list[torch.Tensor] = []  # ids stay unique while the tensors live
    pairs: list[tuple[str, str]] = []
    handles = []

    def conv_hook(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            keep_alive.append(output)
            produced_by[id(output)] = name

        return hook

    def bn_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            calls[name] = calls.get(name, 0) + 1
            source = produced_by.get(id(inputs[0])) if inputs else None
            if source is not None:
                pairs.append((source, name))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, _ConvNd) and not module.transposed:
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif isinstance(module, _BATCHNORMS):
            handles.append(module.register_forward_pre_hook(bn_hook(name)))
    try:
        with torch.no_grad():
            _outputs(model, example)
    finally:
        for handle in handles:
            handle.remove()
    return [(c, b) for c, b in pairs if calls.get(c) == 1 and calls.get(b) == 1]


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor the network returns (all of ``forward_all`` when it has one)."""
    out = model.forward_all(x) if hasattr(model, "forward_all") else model(x)
    flat: list[torch.Tensor] = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif dataclasses.is_dataclass(value):
            for item in (getattr(value, f.name) for f in dataclasses.fields(value)):
                walk(item)

    walk(out)
    return flat


def _fold_pair(conv: _ConvNd, bn: nn.Module) -> None:
    """Rescale ``conv`` in place so that it computes ``bn(conv(x))``."""
    with torch.no_grad():
        var = bn.running_var.to(torch.float64)
        mean = bn.running_mean.to(torch.float64)
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.to(torch.float64)
        shift = -mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias.to(torch.float64)
        if conv.bias is not None:
            shift = shift + conv.bias.to(torch.float64) * scale
        weight = conv.weight.to(torch.float64) * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def _max_relative_error(reference: list[torch.Tensor], candidate: list[torch.Tensor]) -> float:
    if len(reference) != len(candidate):
        return float("inf")
    worst = 0.0
    for a, b in zip(reference, candidate):
        if a.shape != b.shape:
            return float("inf")
        a64, b64 = a.to(torch.float64), b.to(torch.float64)
        scale = a64.abs().max().item() or 1.0
        worst = max(worst, (a64 - b64).abs().max().item() / scale)
    return worst


def fold_batchnorm(model: nn.Module, example: torch.Tensor, *, tolerance: float = 1e-4) -> FoldResult:
    """A copy of ``model`` with every convolution -> BatchNorm pair folded into the convolution.

    The model must be in eval mode (BatchNorm using its running statistics). ``example`` (a few
    real inputs) finds the pairs and checks the result: every output of the copy (all of
    ``forward_all`` for kdlab models) must equal the original's within ``tolerance`` relative to
    the output's largest value, otherwise the original is returned unfolded with the reason.
    ``model`` itself is never modified.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (BatchNorm on its running statistics)")
    pairs = _conv_bn_pairs(model, example)
    pairs = [
        (c, b) for c, b in pairs
        if getattr(model.get_submodule(b), "running_var", None) is not None
        and model.get_submodule(c).out_channels == model.get_submodule(b).num_features
    ]
    if not pairs:
        return FoldResult(model, 0, "no convolution feeds a BatchNorm directly")
    folded = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        _fold_pair(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        folded.set_submodule(bn_name, nn.Identity())
    with torch.no_grad():
        error = _max_relative_error(_outputs(model, example), _outputs(folded, example))
    if not error <= tolerance:
        return FoldResult(model, 0, f"folded outputs differ from the original's (relative error {error:.2e})")
    return FoldResult(folded, len(pairs))

