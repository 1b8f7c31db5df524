"""``coss``: CoSS, cosine similarity in the sample and the space dimension (label-free).

Singh & Wang, "Simple Unsupervised Knowledge Distillation With Space
Similarity", ECCV 2024. The student's embedding goes through the projection
head (when its width differs from the teacher's) and is compared with the
teacher's embedding by :func:`kdlab.losses.coss_loss`.

The official code scales the loss by 1 / (0.07 * 0.1); the recipes reproduce
that with the term weight (``weight: 1428.5714``). The space term depends on
the batch: by default each process uses its own shard (the official code);
``distill.gather: true`` computes the loss on the batch gathered from every
process.
"""

from __future__ import annotations

from typing import Optional

import torch

from kdlab.collectives import gather_enabled, gather_with_grad
from kdlab.losses import cosine_embedding_loss, coss_loss
from kdlab.methods.base import BuildContext, StepContext, register_term
from kdlab.methods.unsupervised.head import EmbeddingTerm


@register_term
class CoSSTerm(EmbeddingTerm):
    """``coss``: mean_i (1 - cos(s_i, t_i)) + space_weight * mean_d (1 - cos(s[:, d], t[:, d]))."""

    name = "coss"
    paper = "Singh & Wang, Simple Unsupervised Knowledge Distillation With Space Similarity, ECCV 2024"

    def __init__(self, ctx: BuildContext, space_weight: float = 1.0, head_hidden: Optional[int] = None) -> None:
        super().__init__(ctx, head_hidden=head_hidden)
        if isinstance(space_weight, bool) or not isinstance(space_weight, (int, float)) or space_weight < 0:
            raise ValueError(f"space_weight must be a number >= 0, got {space_weight!r}")
        self.space_weight = float(space_weight)
        self.gather = bool(getattr(getattr(ctx.config, "distill", None), "gather", False))

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        student, teacher = self.embeddings(step)
        if self.gather or gather_enabled():
            # identity in one process; under DDP the loss sees the global batch with exact gradients
            student, teacher = gather_with_grad(student), gather_with_grad(teacher)
        loss = coss_loss(student, teacher, space_weight=self.space_weight)
        parts = {"loss": loss}
        with torch.no_grad():
            sample = cosine_embedding_loss(student, teacher)
            parts["sample"] = sample
            if self.space_weight > 0:
                parts["space"] = (loss.detach() - sample) / self.space_weight
        return parts

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, space_weight={self.space_weight}, gather={self.gather}"
