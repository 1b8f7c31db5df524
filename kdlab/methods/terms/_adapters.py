"""Learned adapters that map a student feature onto a teacher feature's shape.

They belong to the loss term that creates them, so they are trained with
the student and saved in the checkpoint's ``method`` entry.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _hw(shape: Sequence[int], who: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{who} feature must be a map (C, H, W) per sample, got per-sample shape {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


class ConvRegressor(nn.Module):
    """FitNets' regressor as in RepDistiller (``ConvReg``): a convolution, BatchNorm and ReLU.

    The convolution is chosen from the spatial sizes (student ``H_s`` -> teacher ``H_t``):

    - ``H_s == 2 H_t``: 3x3 stride-2 convolution;
    - ``2 H_s == H_t``: 4x4 stride-2 transposed convolution;
    - ``H_s >= H_t``: a valid convolution of kernel ``(1 + H_s - H_t, 1 + W_s - W_t)``
      (1x1 when the sizes match);
    - otherwise (student smaller by another factor): bilinear resize to the
      teacher's size, then a 1x1 convolution (RepDistiller has no such case).

    Args:
        student_shape: per-sample (C, H, W) of the student feature.
        teacher_shape: per-sample (C, H, W) of the teacher feature.
        relu: end with a ReLU (RepDistiller's default; teacher stages are post-activation).
    """

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int], relu: bool = True) -> None:
        super().__init__()
        s_c, s_h, s_w = _hw(student_shape, "student")
        t_c, t_h, t_w = _hw(teacher_shape, "teacher")
        layers: list[nn.Module]
        if s_h == 2 * t_h and s_w == 2 * t_w:
            layers = [nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)]
        elif 2 * s_h == t_h and 2 * s_w == t_w:
            layers = [nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)]
        elif s_h >= t_h and s_w >= t_w:
            layers = [nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))]
        else:
            layers = [nn.Upsample(size=(t_h, t_w), mode="bilinear", align_corners=False), nn.Conv2d(s_c, t_c, 1)]
        layers.append(nn.BatchNorm2d(t_c))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.student_shape = (s_c, s_h, s_w)
        self.teacher_shape = (t_c, t_h, t_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def extra_repr(self) -> str:
        return f"student_shape={self.student_shape}, teacher_shape={self.teacher_shape}"
