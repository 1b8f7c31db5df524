"""Embedding-regression baselines: ``cosine`` and ``mse_embed`` (student projected to the teacher's space)."""

from __future__ import annotations

from typing import Optional

import torch

from kdlab.losses import cosine_embedding_loss, mse_embedding_loss
from kdlab.methods.base import BuildContext, StepContext, register_term
from kdlab.methods.unsupervised.head import EmbeddingTerm


@register_term
class CosineEmbeddingTerm(EmbeddingTerm):
    """``cosine``: mean_i (1 - cos(head(s_i), t_i)), CoSS without its space term."""

    name = "cosine"
    paper = "- (embedding regression baseline; the sample term of CoSS)"

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = self.embeddings(step)
        return cosine_embedding_loss(student, teacher)


@register_term
class MSEEmbeddingTerm(EmbeddingTerm):
    """``mse_embed``: mean squared error between head(s) and t (L2-normalised rows when ``normalize``)."""

    name = "mse_embed"
    paper = "- (embedding regression baseline)"

    def __init__(self, ctx: BuildContext, normalize: bool = True, head_hidden: Optional[int] = None) -> None:
        super().__init__(ctx, head_hidden=head_hidden)
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be true or false, got {normalize!r}")
        self.normalize = normalize

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = self.embeddings(step)
        return mse_embedding_loss(student, teacher, normalize=self.normalize)
