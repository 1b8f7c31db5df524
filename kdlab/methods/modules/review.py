r"""ReviewKD's attention-based fusion (ABF), the trainable part of the method.

Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021.

The review mechanism lets each student level learn from the deeper ones: the
student maps :math:`x_1, \dots, x_n` (shallow to deep) are processed deepest
first, and each level is fused with the residual :math:`r_{i+1}` carried up
from the level below it (deeper). One :class:`AttentionFusion` per level:

.. math::

    u_i = \mathrm{BN}(\mathrm{Conv}_{1\times1}(x_i)) \in \mathbb{R}^{B \times M \times H_i \times W_i}

    \tilde r_{i+1} = \mathrm{nearest}(r_{i+1}, H_i \times W_i), \qquad
    (a_i, b_i) = \sigma\big(\mathrm{Conv}_{1\times1}([u_i, \tilde r_{i+1}])\big),
    \quad a_i, b_i \in \mathbb{R}^{B \times 1 \times H_i \times W_i}

    r_i = a_i \odot u_i + b_i \odot \tilde r_{i+1} \quad (r_n = u_n \text{ at the deepest level})

    y_i = \mathrm{BN}(\mathrm{Conv}_{3\times3}(r_i)) \in \mathbb{R}^{B \times C^t_i \times H_i \times W_i}

where :math:`[\cdot,\cdot]` concatenates channels, the two attention maps are
broadcast over the M channels, and :math:`y_i` is compared with the teacher's
level-i map by HCL (:func:`kdlab.losses.hcl_loss`).

As in the official code (dvlab-research/ReviewKD, ``ABF``): the 1x1 and 3x3
convolutions have no bias and are initialised with ``kaiming_uniform_(a=1)``;
the attention convolution has a bias and keeps PyTorch's default init; the
residual is resized with nearest-neighbour interpolation to the current
level's size. The official classification code can also resize :math:`r_i` to
a different teacher size before the 3x3 convolution (its ``out_shape``): pass
``out_size`` (:class:`AttentionFusion`) or ``out_sizes`` (:class:`ReviewFusion`)
for that, and the resized :math:`r_i` is also the residual handed on, as there.
Without them :math:`y_i` has the student's spatial size (the detection FPN
levels already match the teacher's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionFusion", "ReviewFusion"]


def _shape(tensor: Tensor) -> str:
    return "(" + ", ".join(str(d) for d in tensor.shape) + ")"


def _positive_ints(name: str, values: Sequence[int]) -> list[int]:
    out = list(values)
    for value in out:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must hold integers >= 1, got {out}")
    return out


class AttentionFusion(nn.Module):
    """One ABF block: project ``x`` to ``mid_channels``, fuse it with the deeper residual, project out.

    Args:
        in_channels: channels of the student map ``x``.
        mid_channels: channels of the fused map (and of the residual passed in).
        out_channels: channels of the output (the teacher's channels at this level).
        fuse: whether this block takes a residual from a deeper level (every level
            but the deepest).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        _positive_ints("AttentionFusion channels", [in_channels, mid_channels, out_channels])
        self.in_channels, self.mid_channels, self.out_channels = in_channels, mid_channels, out_channels
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.output = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.attention: Optional[nn.Conv2d] = nn.Conv2d(2 * mid_channels, 2, 1) if fuse else None
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.output[0].weight, a=1)

    @property
    def fuse(self) -> bool:
        return self.attention is not None

    def forward(
        self, x: Tensor, residual: Optional[Tensor] = None, out_size: Optional[tuple[int, int]] = None
    ) -> tuple[Tensor, Tensor]:
        """``x`` (B, in, H, W) and, when fusing, ``residual`` (B, mid, H', W') from the deeper level.

        ``out_size``: resize the fused map (nearest) to this (H_o, W_o) before the output
        convolution, as the official classification code's ``out_shape``.

        Returns:
            ``(out, fused)``: ``out`` (B, out, H, W) (or (H_o, W_o)) for the loss and ``fused``
            (B, mid, H, W) (or (H_o, W_o)), the residual for the next shallower level.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"AttentionFusion: x must be (batch, {self.in_channels}, height, width), got {_shape(x)}"
            )
        fused = self.reduce(x)
        if self.attention is not None:
            if residual is None:
                raise ValueError("AttentionFusion: this block fuses; pass the residual of the deeper level")
            if residual.ndim != 4 or residual.shape[0] != x.shape[0] or residual.shape[1] != self.mid_channels:
                raise ValueError(
                    f"AttentionFusion: residual must be ({x.shape[0]}, {self.mid_channels}, height, width), "
                    f"got {_shape(residual)}"
                )
            if residual.shape[-2:] != fused.shape[-2:]:
                residual = F.interpolate(residual, size=fused.shape[-2:], mode="nearest")
            weights = torch.sigmoid(self.attention(torch.cat([fused, residual], dim=1)))
            fused = fused * weights[:, 0:1] + residual * weights[:, 1:2]
        elif residual is not None:
            raise ValueError("AttentionFusion: the deepest block (fuse=False) takes no residual")
        if out_size is not None and tuple(fused.shape[-2:]) != tuple(out_size):
            fused = F.interpolate(fused, size=tuple(out_size), mode="nearest")
        return self.output(fused), fused

    def extra_repr(self) -> str:
        return f"fuse={self.fuse}"


class ReviewFusion(nn.Module):
    """ABF over all levels: student maps (shallow -> deep) to teacher-channel maps (shallow -> deep).

    Args:
        student_channels: channels of the student maps, shallow to deep.
        teacher_channels: channels of the teacher maps of the same levels; output
            i has ``teacher_channels[i]`` channels.
        mid_channels: width of the fused maps (official: 256 for the detection FPN;
            ``min(512, student_channels[-1])`` in the classification code).

    ``fusions[i]`` is level i's block (shallow first; the official code keeps them
    deepest first). The outputs have the student's spatial sizes: the caller makes
    the teacher's maps the same size (or resizes the outputs) before HCL.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], mid_channels: int) -> None:
        super().__init__()
        student = _positive_ints("ReviewFusion: student_channels", student_channels)
        teacher = _positive_ints("ReviewFusion: teacher_channels", teacher_channels)
        _positive_ints("ReviewFusion: mid_channels", [mid_channels])
        if not student or len(student) != len(teacher):
            raise ValueError(
                f"ReviewFusion: need one teacher channel count per student level, got student_channels={student} "
                f"and teacher_channels={teacher}"
            )
        self.student_channels, self.teacher_channels, self.mid_channels = student, teacher, mid_channels
        last = len(student) - 1
        self.fusions = nn.ModuleList(
            AttentionFusion(s, mid_channels, t, fuse=i < last) for i, (s, t) in enumerate(zip(student, teacher))
        )

    def forward(
        self, student_features: Sequence[Tensor], out_sizes: Optional[Sequence[tuple[int, int]]] = None
    ) -> list[Tensor]:
        """Fuse deepest first; returns the outputs shallow -> deep, (B, C^t_i, H_i, W_i) each.

        ``out_sizes``: per level (shallow -> deep), the (H, W) of its output (the teacher's map
        size), as the official classification code's ``out_shapes``; default the student's sizes.
        """
        features = list(student_features)
        sizes = [None] * len(features) if out_sizes is None else [tuple(size) for size in out_sizes]
        if len(sizes) != len(features):
            raise ValueError(f"ReviewFusion: got {len(sizes)} out_sizes for {len(features)} student maps")
        if len(features) != len(self.fusions):
            raise ValueError(
                f"ReviewFusion: expected {len(self.fusions)} student maps (shallow to deep), got {len(features)}"
            )
        for i, (feature, channels) in enumerate(zip(features, self.student_channels)):
            if feature.ndim != 4 or feature.shape[1] != channels:
                raise ValueError(
                    f"ReviewFusion: student_features[{i}] must be (batch, {channels}, height, width), "
                    f"got {_shape(feature)}"
                )
        outputs: list[Optional[Tensor]] = [None] * len(features)
        residual: Optional[Tensor] = None
        for i in range(len(features) - 1, -1, -1):
            outputs[i], residual = self.fusions[i](features[i], residual, sizes[i])
        return [out for out in outputs if out is not None]

    def extra_repr(self) -> str:
        return f"student_channels={self.student_channels}, teacher_channels={self.teacher_channels}"
