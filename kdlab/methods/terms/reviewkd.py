"""ReviewKD for classification: attention-based fusion of the student's stages, HCL to the teacher's."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from kdlab.losses import hcl_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.modules.review import ReviewFusion
from kdlab.methods.terms._features import require_probe, stage_pairs
from kdlab.methods.terms._params import non_negative, positive_int

#: the official classification code's cap on the fusion width (``min(512, in_channels[-1])``)
MAX_MID_CHANNELS = 512


def _as_map(embedding: torch.Tensor) -> torch.Tensor:
    """The pooled (B, D) embedding as a (B, D, 1, 1) map: the deepest level of the review."""
    return embedding[:, :, None, None]


@register_term
class ReviewKDTerm(LossTerm):
    """``reviewkd``: HCL(ABF(student levels), teacher levels) over the stages and the pooled feature.

    Levels, shallow to deep: the paired stages (``stages="all"``: the deepest
    ``min(n_s, n_t)`` of both, or a list of stage indices), then the pooled
    embedding of each network as a 1x1 map, as in the official CIFAR-100 code
    (dvlab-research/ReviewKD ``build_review_kd``; mdistiller ``ReviewKD``): student
    features = stages + pooled feature, teacher features = its pre-ReLU stages +
    pooled feature. The student side uses the post-ReLU ``stages``
    (``student_preact=false``, the official CIFAR code and mdistiller's default
    ``STU_PREACT: False``; the ImageNet setting is ``student_preact: true``), the
    teacher's its ``preact_stages`` (``teacher_preact=true``). The fusion modules
    (:class:`~kdlab.methods.modules.review.ReviewFusion`, deepest first) are owned
    by the term; their width is ``mid_channels`` (default, as the official code:
    ``min(512, student embedding width)``), and each level's output is resized to
    the teacher's map size before its output convolution (the official
    ``out_shapes``: ShuffleNet and MobileNetV2 students of larger-map teachers).

    Warm-up as the official CIFAR-100 training script: the weight is multiplied by
    ``min(1, epoch / warmup)`` with the 0-based epoch, i.e. 0 in the first epoch and
    the full weight from epoch ``warmup`` (0-based) on; mdistiller counts epochs
    from 1, which reaches each step one epoch earlier. ``warmup: 0`` disables it
    (the official ImageNet code has no warm-up). Official weights: see the
    CIFAR-100 recipes (5.0 mostly, 0.6 for resnet56 -> resnet20, 1.0 for
    resnet110 -> resnet32, 8.0 for ShuffleV2) and ImageNet 1.0.
    """

    name = "reviewkd"
    paper = "Chen et al., Distilling Knowledge via Knowledge Review, CVPR 2021"
    uses = frozenset({"stages", "preact_stages", "embedding"})

    def __init__(
        self,
        ctx: BuildContext,
        stages: object = "all",
        student_preact: bool = False,
        teacher_preact: bool = True,
        mid_channels: Optional[int] = None,
        pool_sizes: Any = (4, 2, 1),
        warmup: float = 20.0,
    ) -> None:
        super().__init__(ctx)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        for param, value in (("student_preact", student_preact), ("teacher_preact", teacher_preact)):
            if not isinstance(value, bool):
                raise ValueError(f"{param}={value!r} must be true or false")
        self.student_preact, self.teacher_preact = student_preact, teacher_preact
        self.uses = frozenset(
            {"preact_stages" if student_preact else "stages", "preact_stages" if teacher_preact else "stages",
             "embedding"}
        )
        self.pairs = stage_pairs(stages, student, teacher)
        if isinstance(pool_sizes, (str, bytes)) or not hasattr(pool_sizes, "__iter__"):
            raise ValueError(f"pool_sizes={pool_sizes!r} must be a list of integers >= 1")
        self.pool_sizes = tuple(positive_int(f"pool_sizes[{i}]", p) for i, p in enumerate(pool_sizes))
        self.warmup = non_negative("warmup", warmup)
        s_maps = [self._student_levels(student)[i] for i in range(len(self.pairs) + 1)]
        t_maps = self._teacher_levels(teacher)
        if mid_channels is None:
            mid_channels = min(MAX_MID_CHANNELS, int(s_maps[-1].shape[1]))
        self.fusion = ReviewFusion(
            [int(m.shape[1]) for m in s_maps], [int(m.shape[1]) for m in t_maps],
            positive_int("mid_channels", mid_channels),
        )
        self.out_sizes = [(int(m.shape[-2]), int(m.shape[-1])) for m in t_maps]

    def _student_levels(self, features: Any) -> list[torch.Tensor]:
        maps = features.preact_stages if self.student_preact else features.stages
        return [maps[s] for s, _ in self.pairs] + [_as_map(features.embedding)]

    def _teacher_levels(self, features: Any) -> list[torch.Tensor]:
        maps = features.preact_stages if self.teacher_preact else features.stages
        return [maps[t] for _, t in self.pairs] + [_as_map(features.embedding)]

    def weight_scale(self, progress: float) -> float:
        if self.warmup <= 0:
            return 1.0
        epoch = math.floor(progress)  # the official CIFAR-100 loop counts epochs from 0
        return min(epoch / self.warmup, 1.0)

    def forward(self, step: StepContext) -> torch.Tensor:
        fused = self.fusion(self._student_levels(step.student), out_sizes=self.out_sizes)
        return hcl_loss(fused, self._teacher_levels(step.teacher), pool_sizes=self.pool_sizes)

    def extra_repr(self) -> str:
        return (f"pairs={self.pairs} + pooled, student_preact={self.student_preact}, "
                f"teacher_preact={self.teacher_preact}, warmup={self.warmup}")
