"""``reviewkd``: ReviewKD on the FPN levels (the official detection setting).

The student's FPN maps (shallow to deep) go through the attention-based fusion
(ABF, deepest level first, each fused with the one below it), and the hierarchical
context loss (HCL) compares each fused map with the teacher's FPN map of the
same level. As in the official Detectron2 code, the teacher's maps come from
its backbone + FPN on the same images, and no warm-up is applied.
"""

from __future__ import annotations

import torch

from kdlab.losses import hcl_loss
from kdlab.methods.base import register_term
from kdlab.methods.detection.base import DetectionBuildContext, DetectionStep, DetectionTerm
from kdlab.methods.detection.fpn_fitnet import match_size, paired_levels
from kdlab.methods.modules.review import ReviewFusion
from kdlab.methods.terms._params import positive_int


@register_term
class ReviewKDDetectionTerm(DetectionTerm):
    """``reviewkd``: HCL(ABF(student FPN levels), teacher FPN levels).

    ``mid_channels``: width of the fusion (the official detection code: 256, the
    FPN width). ``pool_sizes``: HCL's pyramid (official 4, 2, 1). Official weights:
    1.2 for R101 -> R18, 1.0 for R101 -> R50, 2.0 for R50 -> MobileNetV2.
    """

    name = "reviewkd"
    paper = "Chen et al., Distilling Knowledge via Knowledge Review, CVPR 2021 (COCO detection)"
    needs_teacher = True
    uses = frozenset({"fpn"})

    def __init__(
        self, ctx: DetectionBuildContext, mid_channels: int = 256, pool_sizes: tuple[int, ...] = (4, 2, 1)
    ) -> None:
        super().__init__(ctx)
        levels = paired_levels(ctx, self.name)
        self.pool_sizes = tuple(positive_int("pool_sizes", int(p)) for p in pool_sizes)
        self.fusion = ReviewFusion(
            [s[0] for s, _ in levels], [t[0] for _, t in levels], positive_int("mid_channels", mid_channels)
        )

    def forward(self, step: DetectionStep) -> torch.Tensor:
        teacher = list(step.teacher_fpn.values())  # type: ignore[union-attr]
        fused = self.fusion(list(step.student_fpn.values()))
        return hcl_loss([match_size(f, t) for f, t in zip(fused, teacher)], teacher, pool_sizes=self.pool_sizes)
