"""SSKD's self-supervision (projection) head and the SS accuracy measured with it."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import torch
from torch import nn

from kdlab.losses import sskd_ss_accuracy
from kdlab.methods.sskd.views import rotate4_views


class ProjectionHead(nn.Sequential):
    """Linear(d, d) - ReLU - Linear(d, d) on a network's pooled embedding.

    The same shape for teacher and student (each with its own d), as in the
    paper; state_dict keys are ``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``.
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"ProjectionHead: embedding dimension must be >= 1, got {dim}")
        super().__init__(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.dim = dim


class FrozenProjectionHead(ProjectionHead):
    """A trained teacher head: no gradients, and ``train()`` cannot take it out of eval mode."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenProjectionHead":  # noqa: ARG002 - always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().forward(x)


@torch.no_grad()
def ss_top1(
    model: nn.Module,
    head: nn.Module,
    batches: Iterable[dict[str, Any]],
    group: Optional[int] = None,
) -> Optional[float]:
    """SS accuracy (percent) of ``head`` on ``model``'s embeddings of the evaluation images.

    Each image is rotated by 0/90/180/270 degrees; a rotated view counts as
    right when its head output is most similar (cosine) to the normal view of
    its own image among the images of its group. Groups are ``group``
    consecutive images (the training batch size, so chance is 1/group as in
    training; default: each evaluation batch), forwarded one group at a time
    to bound memory. Groups of a single image are skipped (the task is
    trivial there). Returns None when no group had two images.
    """
    model_was_training, head_was_training = model.training, head.training
    model.eval()
    head.eval()
    dtype = next(head.parameters()).dtype
    right, rows = 0.0, 0
    try:
        for batch in batches:
            images = batch["image"]
            if images.dim() == 5:
                images = images[:, 0]
            for chunk in images.split(group or images.shape[0]):
                if chunk.shape[0] < 2:
                    continue
                views = rotate4_views(chunk)
                embedding = model.forward_all(views.flatten(0, 1)).embedding
                out = head(embedding.to(dtype)).reshape(chunk.shape[0], views.shape[1], -1)
                count = chunk.shape[0] * (views.shape[1] - 1)
                right += float(sskd_ss_accuracy(out)) * count
                rows += count
    finally:
        model.train(model_was_training)
        head.train(head_was_training)
    return None if rows == 0 else 100.0 * right / rows
