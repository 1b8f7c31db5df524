"""Logit distillation on the RoI head: CKD, KD and DKD over the student's sampled RoIs.

Each RoI is one sample: its (K + 1)-way class logits (background included) from
the student's box head, and from the teacher's box head on the same box. The
official CKD detection code applies its loss to exactly these logits; mdistiller
does the same for KD and DKD.
"""

from __future__ import annotations

import torch

from kdlab.collectives import gather_enabled, gather_varlen_with_grad
from kdlab.losses import ckd_loss, dkd_loss, kd_loss
from kdlab.methods.base import register_term
from kdlab.methods.detection.base import DetectionBuildContext, DetectionStep, DetectionTerm
from kdlab.methods.terms._params import non_negative, positive
from kdlab.methods.terms.ckd import ckd_options


class _RoITerm(DetectionTerm):
    needs_teacher = True
    uses = frozenset({"roi_logits"})

    @staticmethod
    def logits(step: DetectionStep) -> tuple[torch.Tensor, torch.Tensor]:
        if step.teacher_roi_logits is None:
            raise ValueError("the teacher's RoI logits were not computed")
        return step.student_roi_logits, step.teacher_roi_logits


@register_term
class RoICKDTerm(_RoITerm):
    """``roi_ckd``: CKD's InfoNCE over every sampled RoI of the batch; positive = the same RoI.

    The official detection recipe: T = 1, weight 0.1 next to the detector's losses.
    With ``distill.gather: true`` under DDP the RoIs of every rank are negatives too.
    """

    name = "roi_ckd"
    paper = "Zhu et al., CKD: Contrastive Knowledge Distillation from a Sample-wise Perspective (COCO detection)"

    def __init__(
        self,
        ctx: DetectionBuildContext,
        temperature: float = 1.0,
        negatives: str = "teacher_student",
        intra_weight: float = 0.0,
    ) -> None:
        super().__init__(ctx)
        self.temperature, self.negatives, self.intra_weight = ckd_options(temperature, negatives, intra_weight)

    def forward(self, step: DetectionStep) -> torch.Tensor:
        student, teacher = self.logits(step)
        if gather_enabled():
            student, teacher = gather_varlen_with_grad(student), gather_varlen_with_grad(teacher)
        return ckd_loss(student, teacher, temperature=self.temperature, negatives=self.negatives,
                        intra_weight=self.intra_weight)


@register_term
class RoIKDTerm(_RoITerm):
    """``roi_kd``: Hinton KD (KL x T^2) of every sampled RoI's class distribution."""

    name = "roi_kd"
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015 (on RoI class logits)"

    def __init__(self, ctx: DetectionBuildContext, temperature: float = 1.0) -> None:
        super().__init__(ctx)
        self.temperature = positive("temperature", temperature)

    def forward(self, step: DetectionStep) -> torch.Tensor:
        student, teacher = self.logits(step)
        return kd_loss(student, teacher, temperature=self.temperature)


@register_term
class RoIDKDTerm(_RoITerm):
    """``roi_dkd``: DKD on the RoI logits, the RoI's sampled label (0 = background) as target.

    mdistiller's detection values: alpha = 1, beta = 0.25, T = 1.
    """

    name = "roi_dkd"
    paper = "Zhao et al., Decoupled Knowledge Distillation, CVPR 2022 (mdistiller's detection setting)"

    def __init__(
        self, ctx: DetectionBuildContext, alpha: float = 1.0, beta: float = 0.25, temperature: float = 1.0
    ) -> None:
        super().__init__(ctx)
        self.alpha = non_negative("alpha", alpha)
        self.beta = non_negative("beta", beta)
        self.temperature = positive("temperature", temperature)

    def forward(self, step: DetectionStep) -> torch.Tensor:
        student, teacher = self.logits(step)
        return dkd_loss(student, teacher, step.roi_labels, alpha=self.alpha, beta=self.beta,
                        temperature=self.temperature)
