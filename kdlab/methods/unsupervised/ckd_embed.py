"""``ckd_embed``: CKD's sample-wise InfoNCE on embeddings instead of logits (label-free baseline).

Zhu et al., "Contrastive Knowledge Distillation from a Sample-wise
Perspective" define the loss on L2-normalised logits; here
:func:`kdlab.losses.ckd_loss` receives the projected student embedding and the
teacher embedding, so the teacher's i-th embedding must pick the student's
i-th embedding out of the batch. Normalised embeddings live in [-1, 1] like
CKD's normalised logits, so CKD's official temperature 1 is kept as default.
"""

from __future__ import annotations

from typing import Optional, cast

import torch

from kdlab.collectives import gather_enabled, gather_with_grad
from kdlab.losses import CKDNegatives, ckd_loss
from kdlab.methods.base import BuildContext, StepContext, register_term
from kdlab.methods.unsupervised.head import EmbeddingTerm

_NEGATIVES = ("teacher_student", "student_student")


@register_term
class CKDEmbeddingTerm(EmbeddingTerm):
    """``ckd_embed``: InfoNCE over the batch between teacher and projected student embeddings."""

    name = "ckd_embed"
    paper = "Zhu et al., Contrastive Knowledge Distillation from a Sample-wise Perspective, 2024 (on embeddings)"

    def __init__(
        self,
        ctx: BuildContext,
        temperature: float = 1.0,
        negatives: str = "teacher_student",
        head_hidden: Optional[int] = None,
    ) -> None:
        super().__init__(ctx, head_hidden=head_hidden)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        if negatives not in _NEGATIVES:
            raise ValueError(f"negatives must be one of {_NEGATIVES}, got {negatives!r}")
        self.temperature = float(temperature)
        self.negatives = cast(CKDNegatives, negatives)

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = self.embeddings(step)
        if gather_enabled():  # negatives from every rank's batch (distill.gather: true)
            student, teacher = gather_with_grad(student), gather_with_grad(teacher)
        return ckd_loss(student, teacher, temperature=self.temperature, negatives=self.negatives)
