"""Does an exported student compute what the PyTorch student computes?

Every file ``kdlab export`` writes is read back by the runtime a deployment would use (ONNX
Runtime on the CPU, ``torch.jit.load``, a fresh network loaded from the safetensors file) and run
on sample batches of more than one size (the batch dimension must be dynamic); its outputs are
compared with the PyTorch student's, the unfolded one, so BatchNorm folding is checked too.

The difference is relative to the reference's largest value, over all compared batches::

    max_abs = max |exported - reference|
    max_rel = max_abs / max(max |reference|, 1e-12)

and the export passes when ``max_rel <= tolerance`` (1e-4 by default): per-element relative
errors would blow up on logits near zero, a scale-free bound on the whole output does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from kdlab.deploy.formats import (
    ExportError,
    Runner,
    first_line,
    logits_of,
    onnx_runner,
    safetensors_runner,
    torchscript_runner,
)

#: the bound on ``max_rel`` an export must meet
RELATIVE_TOLERANCE = 1e-4
#: batch sizes every export is run at: 1 and a size other than the one it was exported with (2)
VERIFY_BATCHES = (1, 3)
#: the denominator's floor, so an all-zero reference does not divide by zero
_SCALE_FLOOR = 1e-12


@dataclass(frozen=True)
class Verification:
    """The outcome of comparing an exported file with the PyTorch student."""

    runtime: str
    batches: tuple[int, ...]
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.tolerance  # False for NaN too

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "batches": list(self.batches), "passed": self.passed}

    def summary(self) -> str:
        verdict = "ok" if self.passed else "MISMATCH"
        return (
            f"{self.runtime} vs the PyTorch student at batch {', '.join(map(str, self.batches))}: "
            f"max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g} "
            f"(tolerance {self.tolerance:g}): {verdict}"
        )


def difference(references: Sequence[torch.Tensor], candidates: Sequence[torch.Tensor]) -> tuple[float, float]:
    """``(max_abs, max_rel)`` over paired outputs, as defined in the module docstring (inf on a shape mismatch)."""
    if len(references) != len(candidates):
        return float("inf"), float("inf")
    max_abs, scale = 0.0, 0.0
    for ref, cand in zip(references, candidates):
        if tuple(ref.shape) != tuple(cand.shape):
            return float("inf"), float("inf")
        ref64, cand64 = ref.detach().to(torch.float64), cand.detach().to(torch.float64)
        max_abs = max(max_abs, (ref64 - cand64).abs().max().item() if ref64.numel() else 0.0)
        scale = max(scale, ref64.abs().max().item() if ref64.numel() else 0.0)
    return max_abs, max_abs / max(scale, _SCALE_FLOOR)


RUNNERS: dict[str, tuple[str, Callable[[Path], Runner]]] = {
    "onnx": ("onnxruntime (CPU)", onnx_runner),
    "torchscript": ("torch.jit.load", torchscript_runner),
    "safetensors": ("safetensors weights in a fresh network", safetensors_runner),
}


def verify_export(
    path: str | Path,
    format: str,
    reference: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    tolerance: float = RELATIVE_TOLERANCE,
) -> Verification:
    """Run the exported file on ``inputs`` (batches of different sizes) and compare with ``reference``.

    ``reference`` is the PyTorch student as trained (unfolded, eval mode). A file the runtime
    cannot load or run is reported as an :class:`ExportError` naming the file.
    """
    if format not in RUNNERS:
        raise ExportError(f"format {format!r}: expected one of {', '.join(RUNNERS)}")
    runtime, make_runner = RUNNERS[format]
    path = Path(path)
    try:
        run = make_runner(path)
        candidates = [run(x) for x in inputs]
    except ExportError:
        raise
    except Exception as err:  # the runtime's own errors: which ones depends on the runtime
        raise ExportError(f"{path}: {runtime} cannot run the exported student: {first_line(err)}") from None
    references = [logits_of(reference, x) for x in inputs]
    max_abs, max_rel = difference(references, candidates)
    return Verification(runtime=runtime, batches=tuple(int(x.shape[0]) for x in inputs),
                        max_abs=max_abs, max_rel=max_rel, tolerance=float(tolerance))


__all__ = [
    "RELATIVE_TOLERANCE",
    "VERIFY_BATCHES",
    "Verification",
    "difference",
    "verify_export",
]
