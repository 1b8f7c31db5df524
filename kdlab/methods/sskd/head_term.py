"""``sskd_head``: SSKD phase 1, the teacher's self-supervision head trained on a frozen backbone."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from kdlab.losses import sskd_ss_accuracy, sskd_ss_ce_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.sskd.head import ProjectionHead, ss_top1
from kdlab.methods.sskd.phase1 import HEAD_TERM
from kdlab.methods.sskd.views import split_views


def embedding_dim(ctx: BuildContext, which: str) -> int:
    """The pooled embedding size of the student or the teacher, from the build-time probe."""
    probe = ctx.student_probe if which == "student" else ctx.teacher_probe
    if probe is not None and probe.embedding is not None:
        return int(probe.embedding.shape[1])
    network = ctx.student if which == "student" else ctx.teacher
    dim = getattr(network, "embedding_dim", None)
    if not isinstance(dim, int):
        raise ValueError(f"SSKD: cannot tell the {which}'s embedding size (no probe, no embedding_dim attribute)")
    return dim


def group_size(ctx: BuildContext) -> Optional[int]:
    """Images per SS-accuracy group at evaluation: the training batch, so chance is 1/batch as in training."""
    config = ctx.config
    return None if config is None else int(config.data.batch_size)


@register_term
class SSKDHeadTerm(LossTerm):
    """``sskd_head``: cross-entropy of the rotation-matching task on the model's projection head.

    Run by SSKD phase 1 on the teacher with ``model.frozen: true``, so only the
    head trains: each rotated view's head output is compared (cosine) with the
    normal views of the batch, and the right answer is its own image. The
    ``sskd`` term sets this run up; it is not meant to be configured by hand.
    """

    name = HEAD_TERM
    paper = "Xu et al., Knowledge Distillation Meets Self-Supervision, ECCV 2020 (teacher head)"
    needs_teacher = False
    needs_labels = False
    uses = frozenset({"embedding"})
    multiview = "rotate4"

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__(ctx)
        self.head = ProjectionHead(embedding_dim(ctx, "student"))
        self.ss_group = group_size(ctx)

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        out = split_views(self.head(step.student.embedding), step.views, f"{self.name} head output")
        return {"loss": sskd_ss_ce_loss(out), "ss_top1": 100.0 * sskd_ss_accuracy(out.detach())}

    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        accuracy = ss_top1(model, self.head, batches, self.ss_group)
        return {} if accuracy is None else {"ss_top1": accuracy}
