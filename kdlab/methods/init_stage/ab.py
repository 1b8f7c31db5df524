"""``ab`` and its initialisation stage ``ab_init`` (Heo et al., AAAI 2019, as RepDistiller runs it)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from kdlab.config import Config
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.losses import ABLoss
from kdlab.methods.base import BuildContext, LossTerm, Prerequisite, StepContext, register_term
from kdlab.methods.init_stage.modules import ab_connectors
from kdlab.methods.init_stage.stage import (
    DEFAULT_INIT_EPOCHS,
    InitSettings,
    InitStage,
    checked,
    configured_weight,
    epochs_text,
    make_stage,
)
from kdlab.methods.terms._features import require_probe, stage_pairs
from kdlab.methods.terms._params import non_negative

PAPER = "Heo et al., Knowledge Transfer via Distillation of Activation Boundaries (AB), AAAI 2019"
INIT_TERM = "ab_init"


class _ABPairs:
    """Stage pairs, connectors and the AB loss on the pre-ReLU stages of one step."""

    def _setup_pairs(self, ctx: BuildContext, stages: Any, margin: Any, who: str) -> None:
        student = require_probe(ctx.student_probe, "student", who)
        teacher = require_probe(ctx.teacher_probe, "teacher", who)
        self.loss = ABLoss(non_negative("margin", margin))
        self.pairs = stage_pairs(stages, student, teacher)
        self.connectors = ab_connectors(
            [tuple(student.preact_stages[s].shape[1:]) for s, _ in self.pairs],
            [tuple(teacher.preact_stages[t].shape[1:]) for _, t in self.pairs],
        )

    def _ab(self, step: StepContext) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        assert step.teacher is not None
        students = [conn(step.student.preact_stages[s]) for conn, (s, _) in zip(self.connectors, self.pairs)]
        teachers = [step.teacher.preact_stages[t] for _, t in self.pairs]
        return self.loss(students, teachers), students, teachers


@register_term
class ABInitTerm(_ABPairs, LossTerm):
    """``ab_init`` (internal): AB's initialisation stage, the student and its connectors on the AB loss alone.

    Set up by the ``ab`` term (see :mod:`kdlab.methods.init_stage.stage`); not meant to be configured by
    hand. Also logs, per pair, the percentage of neurons on the teacher's side of the activation boundary
    (``agree_<teacher stage>``, the official code's "activation similarity").
    """

    name = INIT_TERM
    paper = PAPER + " (initialisation stage)"
    uses = frozenset({"preact_stages"})

    def __init__(self, ctx: BuildContext, stages: object = "all", margin: float = 1.0) -> None:
        super().__init__(ctx)
        self._setup_pairs(ctx, stages, margin, self.name)

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        loss, students, teachers = self._ab(step)
        out = {"loss": loss}
        for (_, t), s_map, t_map in zip(self.pairs, students, teachers):
            out[f"agree_{t}"] = 100.0 * ((s_map.detach() > 0) == (t_map > 0)).float().mean()
        return out

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}"


def ab_stage(config: Config, stages: Any, margin: float, settings: InitSettings) -> InitStage:
    """The ``ab_init`` run of an AB run's config."""
    lr = settings.lr if settings.lr is not None else config.optim.lr
    teacher = resolve_teacher_source(config)[0]
    what = f"student {config.model.name} and connectors on the AB loss against teacher {teacher}"
    return make_stage(
        config, {"name": INIT_TERM, "stages": stages, "margin": margin}, lr, settings.epochs,
        f"AB initialisation stage ({what}, {epochs_text(settings.epochs)})", teacher_side=False,
    )


@register_term
class ABTerm(_ABPairs, LossTerm):
    """``ab``: AB as RepDistiller runs it: an initialisation stage on the AB loss, then the main training.

    Before the main run the trainer runs ``ab_init`` (:mod:`kdlab.methods.init_stage.stage`): the same
    student, seed, data and teacher, SGD at ``init_lr`` (null: the main ``optim.lr``) constant for
    ``init_epochs`` epochs, training the student and one connector per stage pair on the AB loss
    (:func:`kdlab.losses.ab_loss`, ``margin``) between the connected student and the teacher
    ``preact_stages`` (RepDistiller's ``feat[1:-1]`` with ``preact=True``; ``stages`` as OFD's: ``all``
    pairs the deepest ``min(n_s, n_t)``). This term then loads that student's weights, so the main run
    starts from them.

    The weight is the main stage's: RepDistiller's main stage has no AB loss (``loss_kd = 0``, its ``-b 1``
    multiplies nothing; the connectors are set aside), so the recipes use weight 0, and then the term reads
    no features and the teacher is not run in the main stage (the term logs 0). A weight > 0 adds the AB
    loss to the main stage too, its connectors loaded from the initialisation stage and trained on.
    """

    name = "ab"
    paper = PAPER
    uses = frozenset({"preact_stages"})

    def __init__(
        self, ctx: BuildContext, stages: object = "all", margin: float = 1.0,
        init_epochs: int = DEFAULT_INIT_EPOCHS, init_lr: Optional[float] = None,
    ) -> None:
        super().__init__(ctx)
        settings = InitSettings.from_params(init_epochs, init_lr)
        margin = non_negative("margin", margin)
        if ctx.config is None:
            raise ValueError("ab: needs the run's config (BuildContext.config) to find its initialisation stage")
        self.stage = ab_stage(ctx.config, stages, margin, settings)
        student_state, method_state = self.stage.tables(self.name)
        ctx.student.load_state_dict(student_state)
        self.init_only = configured_weight(ctx.config, self.name) == 0.0
        if self.init_only:
            # instance attributes the Distiller reads: no features, no teacher forward in the main stage
            self.uses, self.needs_teacher = frozenset(), False
            return
        self._setup_pairs(ctx, stages, margin, self.name)
        prefix = f"terms.{INIT_TERM}.connectors."
        self.connectors.load_state_dict({k[len(prefix):]: v for k, v in method_state.items() if k.startswith(prefix)})

    @classmethod
    def prerequisites(cls, config: Any, params: dict[str, Any]) -> list[Prerequisite]:
        """The ``ab_init`` run."""
        def stage() -> InitStage:
            settings = InitSettings.from_params(params.get("init_epochs", DEFAULT_INIT_EPOCHS), params.get("init_lr"))
            margin = non_negative("margin", params.get("margin", 1.0))
            return ab_stage(config, params.get("stages", "all"), margin, settings)

        return [checked(cls.name, stage).prerequisite()]

    def forward(self, step: StepContext) -> torch.Tensor:
        if self.init_only:
            return step.student.logits.new_zeros(())
        return self._ab(step)[0]

    def extra_repr(self) -> str:
        return f"init_stage={self.stage.run_dir}, init_only={self.init_only}"
