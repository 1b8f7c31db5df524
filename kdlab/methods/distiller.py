"""The Distiller: a student, its frozen teacher (or teachers) and weighted loss terms."""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn

from kdlab.config.teacher_source import TEACHER_MEAN
from kdlab.methods.base import STUDENT_ONLY_USES, LossTerm, StepContext, StepOutput, TermsOwner
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
        distillation_logits=pick(features.distillation_logits),
    )


class Distiller(TermsOwner):
    """Student + loss terms (+ a frozen teacher, or several, kept outside the module tree).

    Args:
        student: the network being trained (any kdlab feature model).
        terms: ``(key, term, weight)`` triples; ``key`` names the term in logs.
        teacher: a :class:`~kdlab.engine.teacher.FrozenTeacher`, or a
            :class:`~kdlab.engine.teacher.TeacherSet` (several teachers, with ``sources``), or None.
        labels: False for label-free distillation: targets never reach a term.
        sources: with a TeacherSet: term key -> the teacher it reads (a key of the set, or ``"mean"``:
            the weighted mean of the logits) for every term that needs a teacher.
    """

    def __init__(
        self,
        student: nn.Module,
        terms: list[tuple[str, LossTerm, float]],
        teacher: Optional[nn.Module] = None,
        labels: bool = True,
        sources: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(student, terms, teacher)
        self.labels = labels
        self._student_full = any(t.uses & (_FEATURE_KINDS | STUDENT_ONLY_USES) for t in self.terms.values())
        self._needs_teacher = any(t.needs_teacher for t in self.terms.values())
        self._teacher_full = any(t.needs_teacher and (t.uses & _FEATURE_KINDS) for t in self.terms.values())
        if self._needs_teacher and teacher is None:
            names = [k for k, t in self.terms.items() if t.needs_teacher]
            raise ValueError(f"loss terms {names} need a teacher: set teacher.name and teacher.checkpoint")
        #: term key -> the teacher it reads (several teachers only; empty with one)
        self.sources: dict[str, str] = dict(sources or {})
        #: teacher key -> whether its full features are needed; only the teachers some term reads
        self._teacher_plan: dict[str, bool] = {}
        self._needs_mean = False
        if sources is not None:
            self._plan_teachers()

    def _plan_teachers(self) -> None:
        names = getattr(self.teacher, "names", None)
        if names is None:
            raise ValueError("sources select among several teachers: the teacher must be a TeacherSet")
        readers = self.teacher_readers()
        for key, term in self.terms.items():
            if term.needs_teacher and key not in self.sources:
                raise ValueError(f"loss term {key!r} reads a teacher but has no source among {list(names)}")
        full = {self.sources[k] for k, t in self.terms.items() if t.needs_teacher and t.uses & _FEATURE_KINDS}
        if TEACHER_MEAN in full:
            raise ValueError("a term reading feature maps cannot read the mean of the teachers' logits")
        self._needs_mean = TEACHER_MEAN in self.sources.values()
        self._teacher_plan = {key: key in full for key in names if key in readers}

    def teacher_readers(self) -> dict[str, list[str]]:
        """Teacher key -> the keys of the terms that read it (directly, or through ``teacher: mean``)."""
        if not self.sources:
            return {}
        mean_keys = tuple(getattr(self.teacher, "mean_keys", ()))
        readers: dict[str, list[str]] = {}
        for key, source in self.sources.items():
            for teacher in (mean_keys if source == TEACHER_MEAN else (source,)):
                readers.setdefault(teacher, []).append(key)
        unknown = sorted(set(readers) - set(getattr(self.teacher, "names", ())))
        if unknown:
            raise ValueError(f"loss terms read teachers {unknown} that are not among {list(self.teacher.names)}")
        return readers

    def _teachers_forward(self, batch: dict[str, torch.Tensor], images: torch.Tensor) -> dict[str, Features]:
        """Every read teacher's features (from the batch's cache where it holds them, else a live forward), and
        the mean of their logits under ``"mean"`` when a term reads it."""
        cached = batch.get("teacher_features")
        cached = cached if isinstance(cached, dict) else {}
        outputs: dict[str, Features] = {}
        for key, full in self._teacher_plan.items():
            features = cached.get(key)
            if features is None:
                with torch.no_grad():
                    features = _forward(self.teacher[key], images, full)
            outputs[key] = features
        if self._needs_mean:
            mean = self.teacher.mean_logits({key: outputs[key].logits for key in self.teacher.mean_keys})
            outputs[TEACHER_MEAN] = Features(logits=mean, embedding=None, stages=[], preact_stages=[])  # type: ignore[arg-type]
        return outputs

    def forward(self, batch: dict[str, torch.Tensor], epoch: int = 0, progress: float = 0.0) -> StepOutput:
        images = batch["image"]
        views = 1
        if images.dim() == 5:
            views = images.shape[1]
            images = images.flatten(0, 1)
        student = _forward(self.student, images, self._student_full)
        targets = batch.get("target") if self.labels else None
        student0 = _view0(student, views)
        if self.sources:
            everything = self._teachers_forward(batch, images)
            first_view = {key: _view0(features, views) for key, features in everything.items()}
            source_of = {id(term): self.sources.get(key) for key, term in self.terms.items()}

            def teacher_for(term: LossTerm, multi: bool) -> Optional[Features]:
                source = source_of[id(term)]
                if source is None:
                    return None
                return everything[source] if multi else first_view[source]
        else:
            teacher: Optional[Features] = None
            if self._needs_teacher:
                teacher = batch.get("teacher_features")  # type: ignore[assignment]
                if teacher is None:
                    with torch.no_grad():
                        teacher = _forward(self.teacher, images, self._teacher_full)
            teacher0 = None if teacher is None else _view0(teacher, views)

            def teacher_for(term: LossTerm, multi: bool) -> Optional[Features]:
                return teacher if multi else teacher0

        def step_for(term: LossTerm) -> StepContext:
            multi = term.multiview is not None
            return StepContext(
                student=student if multi else student0,
                teacher=teacher_for(term, multi),
                targets=targets,
                index=batch["index"],
                views=views,
                epoch=epoch,
                progress=progress,
                batch=batch,
            )

        values, total = self.weighted_terms(step_for, progress, student.logits)
        return StepOutput(logits=student0.logits, terms=values, loss=total)
