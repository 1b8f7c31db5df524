"""Sample-wise contrastive KD (CKD) on L2-normalised logits as a term."""

from __future__ import annotations

import torch

from kdlab.collectives import gather_enabled, gather_with_grad
from kdlab.losses import ckd_loss
from kdlab.losses.ckd import CKDNegatives
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import choice, non_negative, positive

_NEGATIVES = ("teacher_student", "student_student")


def ckd_options(temperature: float, negatives: str, intra_weight: float) -> tuple[float, CKDNegatives, float]:
    """CKD's term parameters, checked (shared by ``ckd`` and detection's ``roi_ckd``)."""
    return (positive("temperature", temperature), choice("negatives", negatives, _NEGATIVES),  # type: ignore[return-value]
            non_negative("intra_weight", intra_weight))


@register_term
class CKDTerm(LossTerm):
    """``ckd``: InfoNCE over the batch; positive = (teacher, student) logits of the same image.

    ``negatives="teacher_student"`` (official code): teacher row i against every
    student row j; ``"student_student"``: the paper text's student-student
    negatives. ``intra_weight`` adds the explicit intra-sample term (default 0).
    The official recipe weights it 100 (CIFAR-100, most pairs) next to CE 1.0, T = 1.
    """

    name = "ckd"
    paper = "Zhu et al., CKD: Contrastive Knowledge Distillation from a Sample-wise Perspective, arXiv:2404.14109"
    cacheable = True

    def __init__(
        self,
        ctx: BuildContext,
        temperature: float = 1.0,
        negatives: str = "teacher_student",
        intra_weight: float = 0.0,
    ) -> None:
        super().__init__(ctx)
        self.temperature, self.negatives, self.intra_weight = ckd_options(temperature, negatives, intra_weight)

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = step.student.logits, step.teacher.logits
        if gather_enabled():  # negatives from every rank's batch (distill.gather: true)
            student, teacher = gather_with_grad(student), gather_with_grad(teacher)
        return ckd_loss(
            student,
            teacher,
            temperature=self.temperature,
            negatives=self.negatives,
            intra_weight=self.intra_weight,
        )
