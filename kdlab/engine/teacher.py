"""The frozen teacher: eval mode always, no gradients, BatchNorm untouched."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from kdlab.models.features import Features


class FrozenTeacher(nn.Module):
    """Wraps a trained network so nothing can change it.

    - ``train(True)`` is ignored: the teacher stays in eval mode, so BatchNorm
      uses (and never updates) its running statistics and dropout is off.
    - every parameter has ``requires_grad=False``; forwards run under ``no_grad``
      (not ``inference_mode``: its tensors could not be saved for the student's
      backward pass by losses that multiply them with student tensors).
    - optional input re-normalisation: the data pipeline normalises with the
      dataset's mean/std; a teacher trained with other statistics (the shared
      third-party teachers use ImageNet's) gets ``x * scale + shift`` first.
    """

    def __init__(
        self,
        model: nn.Module,
        data_mean: Optional[Sequence[float]] = None,
        data_std: Optional[Sequence[float]] = None,
        teacher_mean: Optional[Sequence[float]] = None,
        teacher_std: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__()
        self.model = model
        for p in self.model.parameters():
            p.requires_grad_(False)
        scale = shift = None
        if teacher_mean is not None or teacher_std is not None:
            if None in (data_mean, data_std, teacher_mean, teacher_std):
                raise ValueError("teacher.mean and teacher.std must be given together (and the data's mean/std known)")
            if not (len(data_mean) == len(data_std) == len(teacher_mean) == len(teacher_std)):  # type: ignore[arg-type]
                raise ValueError(
                    f"teacher mean/std ({len(teacher_mean)}/{len(teacher_std)} channels) do not match the data's "  # type: ignore[arg-type]
                    f"({len(data_mean)}/{len(data_std)} channels)"  # type: ignore[arg-type]
                )
            dm, ds = torch.tensor(data_mean), torch.tensor(data_std)
            tm, ts = torch.tensor(teacher_mean), torch.tensor(teacher_std)
            # x_t = (x * ds + dm - tm) / ts
            scale = (ds / ts).view(1, -1, 1, 1)
            shift = ((dm - tm) / ts).view(1, -1, 1, 1)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":  # noqa: ARG002 - the teacher never trains
        return super().train(False)

    @property
    def num_classes(self) -> Any:
        return getattr(self.model, "num_classes", None)

    @property
    def embedding_dim(self) -> Any:
        return getattr(self.model, "embedding_dim", None)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return x
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self._prepare(x))

    def forward_all(self, x: torch.Tensor) -> Features:
        with torch.no_grad():
            return self.model.forward_all(self._prepare(x))
