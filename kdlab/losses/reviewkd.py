r"""ReviewKD's hierarchical context loss (HCL).

Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021.

HCL compares a student map with the teacher map of the same level not only
pixel by pixel but also after spatial pyramid pooling, so that context at
several scales is transferred. For one level with maps
:math:`f^s, f^t \in \mathbb{R}^{B \times C \times H \times W}` and pool sizes
:math:`(l_1, l_2, \dots)` (default 4, 2, 1), keep the sizes with :math:`l < H`,
in the given order, as :math:`l_1', \dots, l_m'`; then

.. math::

    \mathcal{L}_{level} = \frac{\mathrm{MSE}(f^s, f^t)
        + \sum_{j=1}^{m} w_j \, \mathrm{MSE}\big(P_{l_j'}(f^s), P_{l_j'}(f^t)\big)}
        {1 + \sum_{j=1}^{m} w_j},
    \qquad w_j = 2^{-j},

    \mathcal{L}_{HCL} = \sum_{levels} \mathcal{L}_{level}

where :math:`P_l` is adaptive average pooling to :math:`l \times l` and MSE is
the mean over all elements. So the first pooled size that is used has weight
1/2, the next 1/4, the next 1/8; on an 8x8 map the denominator is 1.875, on a
4x4 map (4 is skipped) 1.75, on a 2x2 map 1.5, and a 1x1 map is compared by
its plain MSE. The levels are summed, not averaged.

Official code vs paper. The weights, the normalisation by their sum and the
skipping rule are those of the official ``hcl`` function (identical in the
CIFAR-100, ImageNet and Detection folders of dvlab-research/ReviewKD): the
weight is halved before each pooled term that is used, and a size is skipped
when it is ``>= H``, the map's height (its width is not looked at; non-square
maps are pooled to :math:`l \times l` all the same). The paper describes the
pyramid (4x4, 2x2, 1x1 pooling) but not these weights. Implemented as in the
official code.

Shapes: each student/teacher pair must have the same (B, C, H, W); different
levels may have different shapes. In ReviewKD the student maps are the outputs
of the attention-based fusion (:mod:`kdlab.methods.modules.review`), already
projected to the teacher's channels; that trainable part belongs to the method.
Official loss weights (they belong to the method): CIFAR-100 scripts mostly 5.0
(0.6 for resnet56 -> resnet20, 1.0 for resnet110 -> resnet32, 8.0 for
resnet32x4 -> ShuffleNetV2), ramped linearly over the first 20 epochs; ImageNet
1.0 (ResNet34 -> ResNet18) and 8.0 (ResNet50 -> MobileNet); COCO detection 1.2
(R101 -> R18), 1.0 (R101 -> R50), 2.0 (R50 -> MobileNetV2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import check_ndim, check_same_shape, upcast

__all__ = ["HCLLoss", "hcl_loss"]

_LAYOUT = "(batch, channels, height, width)"


def _check_pool_sizes(fn: str, pool_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(pool_sizes)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{fn}: pool_sizes must hold positive integers, got {sizes}")
    return sizes


def hcl_loss(
    student_features: Sequence[Tensor], teacher_features: Sequence[Tensor], pool_sizes: Sequence[int] = (4, 2, 1)
) -> Tensor:
    r"""Hierarchical context loss, summed over the levels (see the module docstring).

    Per level: :math:`[\mathrm{MSE}(f^s, f^t) + \sum_j 2^{-j} \mathrm{MSE}(P_{l_j'}(f^s),
    P_{l_j'}(f^t))] / (1 + \sum_j 2^{-j})` over the pool sizes :math:`l_j' < H`, j from 1.

    Args:
        student_features: list of (B, C, H, W) student maps (after fusion).
        teacher_features: list of teacher maps, pairwise of the same shapes.
        pool_sizes: output sizes of the adaptive average pooling, in order of
            decreasing weight (official: 4, 2, 1); sizes ``>= H`` are skipped.

    Returns:
        Scalar tensor, float32 for half/bfloat16 inputs (float64 stays float64).

    Raises:
        ValueError: lists of different lengths or empty, a map that is not 4-D,
            a pair of different shapes, or a pool size that is not a positive int.
    """
    fn = "hcl_loss"
    sizes = _check_pool_sizes(fn, pool_sizes)
    student_list, teacher_list = list(student_features), list(teacher_features)
    if len(student_list) != len(teacher_list):
        raise ValueError(
            f"{fn}: got {len(student_list)} student_features and {len(teacher_list)} teacher_features; "
            "need one teacher map per student map"
        )
    if not student_list:
        raise ValueError(f"{fn}: student_features and teacher_features are empty; need at least one level")
    for i, (fs, ft) in enumerate(zip(student_list, teacher_list)):
        check_ndim(fn, f"student_features[{i}]", fs, 4, _LAYOUT)
        check_ndim(fn, f"teacher_features[{i}]", ft, 4, _LAYOUT)
        check_same_shape(fn, f"student_features[{i}]", fs, f"teacher_features[{i}]", ft)

    total: Tensor | None = None
    for fs, ft in zip(student_list, teacher_list):
        student, teacher = upcast(fs, ft)
        height = student.shape[2]
        loss = F.mse_loss(student, teacher)
        weight, weight_sum = 1.0, 1.0
        for size in sizes:
            if size >= height:
                continue
            weight /= 2.0
            pooled = F.mse_loss(F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size))
            loss = loss + weight * pooled
            weight_sum += weight
        level = loss / weight_sum
        total = level if total is None else total + level
    assert total is not None
    return total


class HCLLoss(nn.Module):
    """Module form of :func:`hcl_loss`; stores the pool sizes."""

    def __init__(self, pool_sizes: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        self.pool_sizes = _check_pool_sizes("HCLLoss", pool_sizes)

    def forward(self, student_features: Sequence[Tensor], teacher_features: Sequence[Tensor]) -> Tensor:
        return hcl_loss(student_features, teacher_features, self.pool_sizes)

    def extra_repr(self) -> str:
        return f"pool_sizes={self.pool_sizes}"
