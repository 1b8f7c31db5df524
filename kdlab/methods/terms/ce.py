"""Cross-entropy with the labels: supervised training is this term alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term


@register_term
class CrossEntropyTerm(LossTerm):
    """``ce``: cross-entropy of the student's logits against the labels."""

    name = "ce"
    paper = "-"
    needs_teacher = False
    needs_labels = True

    def __init__(self, ctx: BuildContext, label_smoothing: float = 0.0) -> None:
        super().__init__(ctx)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def forward(self, step: StepContext) -> torch.Tensor:
        return F.cross_entropy(step.student.logits.float(), step.targets, label_smoothing=self.label_smoothing)
