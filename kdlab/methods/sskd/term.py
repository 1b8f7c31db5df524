"""``sskd``: the SSKD student objective (phase 2), with the student's head and the teacher's frozen head."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from kdlab.losses import SSKDLoss
from kdlab.methods.base import BuildContext, LossTerm, Prerequisite, StepContext, register_term
from kdlab.methods.sskd.head import FrozenProjectionHead, ProjectionHead, ss_top1
from kdlab.methods.sskd.head_term import embedding_dim, group_size
from kdlab.methods.sskd.phase1 import (
    DEFAULT_HEAD_EPOCHS,
    DEFAULT_HEAD_LR,
    DEFAULT_HEAD_MILESTONES,
    HeadSettings,
    head_prerequisite,
    head_run_dir,
    load_head_state,
    require_finished,
)
from kdlab.methods.sskd.views import split_views


def _head_settings(params: dict[str, Any]) -> HeadSettings:
    return HeadSettings.from_params(
        epochs=params.get("head_epochs", DEFAULT_HEAD_EPOCHS),
        lr=params.get("head_lr", DEFAULT_HEAD_LR),
        milestones=params.get("head_milestones", DEFAULT_HEAD_MILESTONES),
    )


@register_term
class SSKDTerm(LossTerm):
    """``sskd``: ce + kd on the normal view, tf on the rotated views, ss on the heads' similarity matrices.

    Weights inside the term carry the published values (configure the term
    with weight 1.0). The teacher's head is trained first by phase 1 (see
    :mod:`kdlab.methods.sskd.phase1`) and loaded frozen; the student's head
    trains with the student.

    Args:
        temperature, ss_temperature, ce_weight, kd_weight, tf_weight, ss_weight, tf_ratio, ss_ratio:
            see :func:`kdlab.losses.sskd_loss` (defaults: the official code's).
        head_epochs, head_lr, head_milestones: phase-1 training of the teacher's head
            (SGD, momentum 0.9, weight decay 5e-4, lr x0.1 at the milestones).
        head_checkpoint: use this teacher head instead of phase 1: a phase-1 run folder, a kdlab
            checkpoint holding ``terms.sskd_head.head.*``, or the head's own state_dict.
    """

    name = "sskd"
    paper = "Xu et al., Knowledge Distillation Meets Self-Supervision, ECCV 2020"
    needs_teacher = True
    needs_labels = True
    uses = frozenset({"logits", "embedding"})
    multiview = "rotate4"
    # the teacher's logits and pooled embedding of every view are all it reads (its frozen head runs on
    # the embedding here), so a cache of the 4 rotated views per image replaces the live teacher
    cacheable = True

    def __init__(
        self,
        ctx: BuildContext,
        temperature: float = 4.0,
        ss_temperature: float = 0.5,
        ce_weight: float = 0.1,
        kd_weight: float = 0.9,
        tf_weight: float = 2.7,
        ss_weight: float = 10.0,
        tf_ratio: float = 1.0,
        ss_ratio: float = 0.75,
        head_epochs: int = DEFAULT_HEAD_EPOCHS,
        head_lr: float = DEFAULT_HEAD_LR,
        head_milestones: Sequence[int] = DEFAULT_HEAD_MILESTONES,
        head_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__(ctx)
        self.loss = SSKDLoss(
            temperature=temperature,
            ss_temperature=ss_temperature,
            ce_weight=ce_weight,
            kd_weight=kd_weight,
            tf_weight=tf_weight,
            ss_weight=ss_weight,
            tf_ratio=tf_ratio,
            ss_ratio=ss_ratio,
        )
        settings = HeadSettings.from_params(head_epochs, head_lr, head_milestones)
        if ctx.teacher is None:
            raise ValueError("sskd needs a teacher: set teacher.name / teacher.checkpoint")
        self.student_head = ProjectionHead(embedding_dim(ctx, "student"))
        teacher_dim = embedding_dim(ctx, "teacher")
        self.teacher_head = FrozenProjectionHead(teacher_dim)
        self.head_source = self._teacher_head_file(ctx, settings, head_checkpoint)
        self.teacher_head.load_state_dict(load_head_state(self.head_source, teacher_dim))
        self.ss_group = group_size(ctx)

    @staticmethod
    def _teacher_head_file(ctx: BuildContext, settings: HeadSettings, head_checkpoint: Optional[str]) -> Path:
        if head_checkpoint is not None:
            return Path(head_checkpoint)
        if ctx.config is None:
            raise ValueError("sskd: without the run's config, the teacher head must be given as head_checkpoint")
        return require_finished(head_run_dir(ctx.config, settings))

    @classmethod
    def prerequisites(cls, config: Any, params: dict[str, Any]) -> list[Prerequisite]:
        """Phase 1 (the teacher's head), unless ``head_checkpoint`` names a head to use instead."""
        if params.get("head_checkpoint") is not None:
            return []
        return [head_prerequisite(config, _head_settings(params))]

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        views = step.views
        student_logits = split_views(step.student.logits, views, "sskd student logits")
        teacher_logits = split_views(step.teacher.logits, views, "sskd teacher logits")
        student_out = split_views(self.student_head(step.student.embedding), views, "sskd student head output")
        teacher_out = split_views(self.teacher_head(step.teacher.embedding), views, "sskd teacher head output")
        return self.loss(student_logits, teacher_logits, student_out, teacher_out, step.targets)

    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """The student head's SS accuracy on the evaluation split (percent)."""
        accuracy = ss_top1(model, self.student_head, batches, self.ss_group)
        return {} if accuracy is None else {"ss_top1": accuracy}
