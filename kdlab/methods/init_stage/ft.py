"""``ft`` and its initialisation stage ``ft_init`` (Kim et al., NeurIPS 2018, as RepDistiller runs it)."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from kdlab.config import Config
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.losses import FTLoss
from kdlab.methods.base import BuildContext, LossTerm, Prerequisite, StepContext, register_term
from kdlab.methods.init_stage.modules import FrozenParaphraser, Paraphraser, Translator, factor_channels
from kdlab.methods.init_stage.stage import (
    DEFAULT_INIT_EPOCHS,
    FT_SMALL_LR,
    FT_SMALL_LR_STUDENTS,
    InitSettings,
    InitStage,
    checked,
    epochs_text,
    make_stage,
)
from kdlab.methods.terms._features import require_probe
from kdlab.methods.terms._params import positive

PAPER = "Kim et al., Paraphrasing Complex Network: Network Compression via Factor Transfer (FT), NeurIPS 2018"
INIT_TERM = "ft_init"


def _rate(rate: Any) -> float:
    value = positive("rate", rate)
    if value > 1:
        raise ValueError(f"rate={rate!r} must be in (0, 1]: the paraphraser compresses the teacher's channels")
    return value


def _deepest_channels(probe: Any, who: str, term: str) -> int:
    features = require_probe(probe, who, term)
    if not features.stages:
        raise ValueError(f"{term}: the {who} exposes no stages (FT reads its deepest feature map)")
    return int(features.stages[-1].shape[1])


@register_term
class FTInitTerm(LossTerm):
    """``ft_init`` (internal): FT's initialisation stage, the paraphraser trained to reconstruct the frozen
    network's deepest stage (MSE), RepDistiller's ``init`` for ``factor``.

    Runs on the teacher as the model with ``model.frozen: true``, so only the paraphraser trains; the ``ft``
    term sets this run up (see :mod:`kdlab.methods.init_stage.stage`), it is not meant to be configured by hand.
    """

    name = INIT_TERM
    paper = PAPER + " (paraphraser)"
    needs_teacher = False
    uses = frozenset({"stages"})

    def __init__(self, ctx: BuildContext, rate: float = 0.5) -> None:
        super().__init__(ctx)
        if ctx.config is not None and not ctx.config.model.frozen:
            raise ValueError("ft_init trains a paraphraser on a frozen network: set model.frozen: true "
                             "(the ft term sets this run up)")
        self.paraphraser = Paraphraser(_deepest_channels(ctx.student_probe, "model", self.name), _rate(rate))

    def forward(self, step: StepContext) -> torch.Tensor:
        feature = step.student.stages[-1]
        _, reconstruction = self.paraphraser(feature)
        return F.mse_loss(reconstruction.float(), feature.float())


def ft_init_lr(config: Config, settings: InitSettings) -> float:
    """``init_lr``, or RepDistiller's: 0.01 for its CIFAR ResNet / WRN students, else the main ``optim.lr``."""
    if settings.lr is not None:
        return settings.lr
    return FT_SMALL_LR if config.model.name in FT_SMALL_LR_STUDENTS else config.optim.lr


def ft_stage(config: Config, rate: float, settings: InitSettings) -> InitStage:
    """The ``ft_init`` run of an FT run's config (shared by every student of one teacher and settings)."""
    what = f"the paraphraser of teacher {resolve_teacher_source(config)[0]}"
    return make_stage(
        config, {"name": INIT_TERM, "rate": rate}, ft_init_lr(config, settings), settings.epochs,
        f"FT initialisation stage ({what}, {epochs_text(settings.epochs)})", teacher_side=True,
    )


@register_term
class FTTerm(LossTerm):
    """``ft``: factor transfer as RepDistiller runs it: the teacher's paraphraser first, then the main training.

    Before the first run with a teacher the trainer runs ``ft_init`` (:mod:`kdlab.methods.init_stage.stage`):
    the paraphraser (``rate`` k: int(k C) factor channels) trained for ``init_epochs`` epochs to reconstruct
    the frozen teacher's deepest stage (RepDistiller's ``feat[-2]``), SGD constant at ``init_lr`` (null:
    RepDistiller's choice, 0.01 for CIFAR ResNet / WRN students, else the main ``optim.lr``), at a fixed seed,
    so every student seed with that teacher and those settings shares it. This term loads it frozen (eval
    mode, no gradients) and trains a translator (conv-BN-LeakyReLU x 3) on the student's deepest stage with
    the student: the loss is :func:`kdlab.losses.ft_loss` (``p1``, ``p2``) between the translator's output
    and the paraphraser's encoding of the teacher map. RepDistiller's weight: 200 (CE 1, no KD).
    """

    name = "ft"
    paper = PAPER
    uses = frozenset({"stages"})

    def __init__(
        self, ctx: BuildContext, p1: int = 2, p2: int = 1, rate: float = 0.5,
        init_epochs: int = DEFAULT_INIT_EPOCHS, init_lr: Optional[float] = None,
    ) -> None:
        super().__init__(ctx)
        self.loss = FTLoss(p1, p2)
        settings = InitSettings.from_params(init_epochs, init_lr)
        rate = _rate(rate)
        if ctx.config is None:
            raise ValueError("ft: needs the run's config (BuildContext.config) to find its paraphraser")
        teacher_channels = _deepest_channels(ctx.teacher_probe, "teacher", self.name)
        student_channels = _deepest_channels(ctx.student_probe, "student", self.name)
        self.stage = ft_stage(ctx.config, rate, settings)
        self.paraphraser = FrozenParaphraser(teacher_channels, rate)
        state = self.stage.module_state(self.name, "paraphraser")
        try:
            self.paraphraser.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"ft: the paraphraser in {self.stage.run_dir} does not fit the teacher: {err}") from None
        self.translator = Translator(student_channels, factor_channels(teacher_channels, rate))

    @classmethod
    def prerequisites(cls, config: Any, params: dict[str, Any]) -> list[Prerequisite]:
        """The ``ft_init`` run (the teacher's paraphraser)."""
        def stage() -> InitStage:
            settings = InitSettings.from_params(params.get("init_epochs", DEFAULT_INIT_EPOCHS), params.get("init_lr"))
            return ft_stage(config, _rate(params.get("rate", 0.5)), settings)

        return [checked(cls.name, stage).prerequisite()]

    def forward(self, step: StepContext) -> torch.Tensor:
        assert step.teacher is not None
        student_factor = self.translator(step.student.stages[-1])
        teacher_factor = self.paraphraser.encode(step.teacher.stages[-1])
        return self.loss(student_factor, teacher_factor)

    def extra_repr(self) -> str:
        return f"paraphraser={self.stage.run_dir}"
