"""A test-only batch-dependent loss term: CKD on logits, gathered across ranks when asked.

It follows the pattern every batch-dependent term should follow under DDP:
compute the batch-level loss on ``gather_with_grad(x)`` when ``gather_enabled()``.
Each forward appends its loss value to :data:`RECORDED` so a test can compare steps.
"""

from __future__ import annotations

import torch

from kdlab.engine.distributed import gather_enabled, gather_with_grad
from kdlab.losses.ckd import ckd_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term, term_registry

RECORDED: list[float] = []


class CKDGatherProbe(LossTerm):
    """``ckd_gather_probe``: sample-wise contrastive KD whose negatives are the (gathered) batch."""

    name = "ckd_gather_probe"
    paper = "test probe (Zhu et al. 2024 CKD)"

    def __init__(self, ctx: BuildContext, temperature: float = 1.0) -> None:
        super().__init__(ctx)
        self.temperature = temperature

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = step.student.logits, step.teacher.logits
        if gather_enabled():
            student, teacher = gather_with_grad(student), gather_with_grad(teacher)
        loss = ckd_loss(student, teacher, temperature=self.temperature)
        RECORDED.append(float(loss.detach()))
        return loss


if CKDGatherProbe.name not in term_registry():
    register_term(CKDGatherProbe)
