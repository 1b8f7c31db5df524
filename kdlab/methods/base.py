"""The method contract: loss terms composed by a :class:`Distiller`.

A run's method is a ``Distiller``: it owns the student and every loss term's
trainable extras (adapters, heads, memory banks), so the optimizer,
checkpoints and DDP see them as ordinary ``nn.Module`` children. The frozen
teacher is held outside the module tree (never optimised, never saved, never
wrapped by DDP). The one trainer calls ``distiller(batch)`` and gets a
:class:`StepOutput`; it never knows which method it runs.

A loss term is a :class:`LossTerm` subclass registered with
:func:`register_term`. It declares what it needs (teacher, labels, which
student/teacher features, multi-view batches, sample indices) and computes a
scalar (or a dict of named scalars plus ``"loss"``) from a
:class:`StepContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from kdlab.models.features import Features


@dataclass
class BuildContext:
    """What a term may look at when it builds its modules."""

    student: nn.Module
    teacher: Optional[nn.Module]
    num_classes: int
    train_size: int
    image_size: int
    in_chans: int
    labels: bool
    seed: int
    epochs: int
    steps_per_epoch: int
    head_hidden: int = 2048
    config: Any = None  # the run's full Config, for terms that prepare artefacts (e.g. SSKD's teacher head)
    device: Any = None
    student_probe: Optional[Features] = None
    teacher_probe: Optional[Features] = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """One training step as a loss term sees it.

    ``student`` / ``teacher`` hold features of the views a term asked for:
    with multi-view batches (B, V, C, H, W), a term with ``multiview=True``
    gets all B*V rows image-major (image 0 views 0..V-1, image 1, ...); any
    other term gets view 0 only (B rows).
    """

    student: Features
    teacher: Optional[Features]
    targets: Optional[torch.Tensor]
    index: torch.Tensor
    views: int
    epoch: int
    progress: float  # fractional epochs done, e.g. 3.25
    batch: dict[str, torch.Tensor]


class LossTerm(nn.Module):
    """One named loss term. Subclasses set the class attributes below."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: the config ``task`` this term belongs to
    task: ClassVar[str] = "classification"
    needs_teacher: ClassVar[bool] = True
    needs_labels: ClassVar[bool] = False
    #: student / teacher features used: any of "logits", "embedding", "stages", "preact_stages", and the
    #: student-only "distillation_logits" (see STUDENT_ONLY_USES)
    uses: ClassVar[frozenset[str]] = frozenset({"logits"})
    multiview: ClassVar[Optional[str]] = None  # e.g. "rotate4": the data views this term requires
    needs_index: ClassVar[bool] = False
    #: can be fed from a teacher-output cache holding logits / embeddings only
    cacheable: ClassVar[bool] = False

    def __init__(self, ctx: BuildContext) -> None:
        super().__init__()

    def forward(self, step: StepContext) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def prerequisites(cls, config: Any, params: dict[str, Any]) -> list["Prerequisite"]:
        """Runs that must have finished before this term can be built (e.g. SSKD's teacher head).

        The trainer runs each missing one first (the same trainer, another config); the term's
        ``__init__`` then loads what it produced.
        """
        return []

    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """Extra metrics of this term measured on the evaluation split (e.g. SS accuracy)."""
        return {}

    def weight_scale(self, progress: float) -> float:
        """Multiplier of the configured weight at this point (warm-up schedules)."""
        return 1.0

    def eval_embedding(self, student_embedding: torch.Tensor) -> Optional[torch.Tensor]:
        """An extra embedding to report at evaluation (e.g. a projection head's output)."""
        return None


#: ``uses`` entries read from the student only (the teacher is never asked for them): a distilled DeiT's
#: distillation-head logits (the ``deit`` term)
STUDENT_ONLY_USES = frozenset({"distillation_logits"})


@dataclass
class Prerequisite:
    """A run to finish first: ``config`` is trained until ``produces`` exists."""

    description: str
    config: Any
    produces: Any  # pathlib.Path


#: (task, name) -> term class: a name may be used once per task (e.g. ``reviewkd`` for
#: classification and for detection)
_TERMS: dict[tuple[str, str], type[LossTerm]] = {}

#: packages whose import registers loss terms
TERM_PACKAGES = (
    "kdlab.methods.terms", "kdlab.methods.sskd", "kdlab.methods.unsupervised", "kdlab.methods.detection",
    "kdlab.methods.init_stage",
)


def register_term(cls: type[LossTerm]) -> type[LossTerm]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set a name")
    key = (cls.task, cls.name)
    if key in _TERMS and _TERMS[key] is not cls:
        raise ValueError(
            f"{cls.task} loss term {cls.name!r} registered twice ({_TERMS[key].__name__}, {cls.__name__})"
        )
    _TERMS[key] = cls
    return cls


def _import_term_packages() -> None:
    import importlib

    for package in TERM_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as err:
            if err.name != package:
                raise


def term_registry(task: Optional[str] = None) -> dict[str, type[LossTerm]]:
    """Name -> term class of one ``task``; without a task, every name (classification's where tasks share one)."""
    _import_term_packages()
    if task is not None:
        return {name: cls for (term_task, name), cls in _TERMS.items() if term_task == task}
    merged: dict[str, type[LossTerm]] = {}
    for (term_task, name), cls in _TERMS.items():
        if name not in merged or term_task == "classification":
            merged[name] = cls
    return merged


def all_terms() -> list[type[LossTerm]]:
    """Every registered term class of every task, by (name, task)."""
    _import_term_packages()
    return [_TERMS[key] for key in sorted(_TERMS, key=lambda key: (key[1], key[0]))]


@dataclass
class StepOutput:
    """What a method returns for one batch."""

    logits: Optional[torch.Tensor]  # student logits of the normal view (B, K), for training accuracy
    terms: dict[str, torch.Tensor]  # raw value of every named term (and sub-term "name/part")
    loss: torch.Tensor  # the weighted total that is backpropagated


class TermsOwner(nn.Module):
    """A student and its weighted loss terms, plus a frozen teacher held outside the module tree.

    The common ground of the task Distillers: the terms' trainable modules are children
    (optimised, checkpointed, DDP-wrapped), the teacher is not, yet ``.to()`` reaches it.
    """

    def __init__(self, student: nn.Module, terms: list[tuple[str, "LossTerm", float]], teacher: Optional[nn.Module]
                 ) -> None:
        super().__init__()
        if not terms:
            raise ValueError(f"a {type(self).__name__} needs at least one loss term")
        self.student = student
        self.terms = nn.ModuleDict({key: term for key, term, _ in terms})
        self.weights = {key: float(weight) for key, _, weight in terms}
        # Kept out of the module tree: not optimised, not checkpointed, not DDP-wrapped.
        self.__dict__["teacher"] = teacher

    @property
    def teacher(self) -> Optional[nn.Module]:
        return self.__dict__["teacher"]

    def _apply(self, fn, *args, **kwargs):  # type: ignore[override]
        # .to()/.cuda()/.half() reach the teacher too, though it is not a child module.
        if self.teacher is not None:
            self.teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def weighted_terms(self, step_for: Any, progress: float, like: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Every term's value (and sub-terms ``key/part``) and the weighted total, in fp32.

        ``step_for(term)`` gives the step context the term reads.
        """
        values: dict[str, torch.Tensor] = {}
        total = like.new_zeros((), dtype=torch.float32)
        for key, term in self.terms.items():
            out = term(step_for(term))
            if isinstance(out, dict):
                for part, value in out.items():
                    if part != "loss":
                        values[f"{key}/{part}"] = value.detach()
                out = out["loss"]
            values[key] = out.detach()
            total = total + (self.weights[key] * term.weight_scale(progress)) * out.float()
        return values, total

    def eval_model(self) -> nn.Module:
        """The network that evaluation measures (the student)."""
        return self.student
