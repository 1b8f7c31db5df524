"""The Distiller: a student, its frozen teacher and weighted loss terms."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from kdlab.methods.base import LossTerm, StepContext, StepOutput, TermsOwner
from kdlab.models.features import Features

_FEATURE_KINDS = frozenset({"embedding", "stages", "preact_stages"})


def _forward(model: nn.Module, x: torch.Tensor, full: bool) -> Features:
    if full:
        return model.forward_all(x)
    return Features(logits=model(x), embedding=None, stages=[], preact_stages=[])  # type: ignore[arg-type]


def _view0(features: Features, views: int) -> Features:
    """Rows of view 0 from image-major multi-view features."""
    if views == 1:
        return features

    def pick(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else t[::views]

    return Features(
        logits=pick(features.logits),  # type: ignore[arg-type]
        embedding=pick(features.embedding),  # type: ignore[arg-type]
        stages=[s[::views] for s in features.stages],
        preact_stages=[s[::views] for s in features.preact_stages],
    )


class Distiller(TermsOwner):
    """Student + loss terms (+ a frozen teacher kept outside the module tree).

    Args:
        student: the network being trained (any kdlab feature model).
        terms: ``(key, term, weight)`` triples; ``key`` names the term in logs.
        teacher: a :class:`~kdlab.engine.teacher.FrozenTeacher`, or None.
        labels: False for label-free distillation: targets never reach a term.
    """

    def __init__(
        self,
        student: nn.Module,
        terms: list[tuple[str, LossTerm, float]],
        teacher: Optional[nn.Module] = None,
        labels: bool = True,
    ) -> None:
        super().__init__(student, terms, teacher)
        self.labels = labels
        self._student_full = any(t.uses & _FEATURE_KINDS for t in self.terms.values())
        self._needs_teacher = any(t.needs_teacher for t in self.terms.values())
        self._teacher_full = any(t.needs_teacher and (t.uses & _FEATURE_KINDS) for t in self.terms.values())
        if self._needs_teacher and teacher is None:
            names = [k for k, t in self.terms.items() if t.needs_teacher]
            raise ValueError(f"loss terms {names} need a teacher: set teacher.name and teacher.checkpoint")

    def forward(self, batch: dict[str, torch.Tensor], epoch: int = 0, progress: float = 0.0) -> StepOutput:
        images = batch["image"]
        views = 1
        if images.dim() == 5:
            views = images.shape[1]
            images = images.flatten(0, 1)
        student = _forward(self.student, images, self._student_full)
        teacher: Optional[Features] = None
        if self._needs_teacher:
            teacher = batch.get("teacher_features")  # type: ignore[assignment]
            if teacher is None:
                with torch.no_grad():
                    teacher = _forward(self.teacher, images, self._teacher_full)
        targets = batch.get("target") if self.labels else None
        student0, teacher0 = _view0(student, views), (None if teacher is None else _view0(teacher, views))

        def step_for(term: LossTerm) -> StepContext:
            multi = term.multiview is not None
            return StepContext(
                student=student if multi else student0,
                teacher=teacher if multi else teacher0,
                targets=targets,
                index=batch["index"],
                views=views,
                epoch=epoch,
                progress=progress,
                batch=batch,
            )

        values, total = self.weighted_terms(step_for, progress, student.logits)
        return StepOutput(logits=student0.logits, terms=values, loss=total)
