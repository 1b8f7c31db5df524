"""``fsp`` and its initialisation stage ``fsp_init`` (Yim et al., CVPR 2017, as RepDistiller runs it)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from kdlab.config import Config
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.losses import fsp_loss
from kdlab.methods.base import BuildContext, LossTerm, Prerequisite, StepContext, register_term
from kdlab.methods.init_stage.stage import (
    DEFAULT_INIT_EPOCHS,
    InitSettings,
    InitStage,
    checked,
    configured_weight,
    epochs_text,
    make_stage,
)
from kdlab.methods.init_stage.stem import (
    StemTap,
    check_equal_channels,
    fsp_channels,
    fsp_maps,
    make_tap,
    stem_taps,
)
from kdlab.methods.terms._features import require_probe
from kdlab.methods.terms._params import boolean

PAPER = "Yim et al., A Gift from Knowledge Distillation (FSP), CVPR 2017"
INIT_TERM = "fsp_init"
#: the teacher's stem is read by a hook on the network itself, which a folded or compiled copy bypasses
UNFOLDED_TEACHER = {"fold_batchnorm": False, "compile": False}


class _FSPMaps:
    """Both networks' FSP maps (stem taps + stages) and the FSP loss of one step."""

    student_tap: Optional[StemTap]
    teacher_tap: Optional[StemTap]

    def _setup_maps(self, ctx: BuildContext, stem: Any, who: str) -> None:
        use_stem = boolean("stem", stem)
        require_probe(ctx.student_probe, "student", who)
        require_probe(ctx.teacher_probe, "teacher", who)
        if ctx.teacher is None:
            raise ValueError(f"{who}: needs a teacher")
        self.student_tap, self.teacher_tap = stem_taps(ctx.student, ctx.teacher) if use_stem else (None, None)
        check_equal_channels(
            fsp_channels(ctx.student, self.student_tap, ctx.in_chans, ctx.image_size, ctx.device),
            fsp_channels(ctx.teacher, self.teacher_tap, ctx.in_chans, ctx.image_size, ctx.device),
            type(ctx.student).__name__, type(getattr(ctx.teacher, "model", ctx.teacher)).__name__,
        )

    def _fsp(self, step: StepContext) -> torch.Tensor:
        assert step.teacher is not None
        student = fsp_maps(step.student.stages, self.student_tap, step.views)
        teacher = fsp_maps(step.teacher.stages, self.teacher_tap, step.views)
        return fsp_loss(student, teacher)


@register_term
class FSPInitTerm(_FSPMaps, LossTerm):
    """``fsp_init`` (internal): FSP's initialisation stage, the student trained on the FSP loss alone.

    Set up by the ``fsp`` term (see :mod:`kdlab.methods.init_stage.stage`); not meant to be configured by
    hand. The teacher must run unfolded (``teacher.fold_batchnorm: false``) for its stem to be read.
    """

    name = INIT_TERM
    paper = PAPER + " (initialisation stage)"
    uses = frozenset({"stages"})

    def __init__(self, ctx: BuildContext, stem: bool = True) -> None:
        super().__init__(ctx)
        self._setup_maps(ctx, stem, self.name)

    def forward(self, step: StepContext) -> torch.Tensor:
        return self._fsp(step)


def fsp_stage(config: Config, stem: bool, settings: InitSettings) -> InitStage:
    """The ``fsp_init`` run of an FSP run's config."""
    lr = settings.lr if settings.lr is not None else config.optim.lr
    what = f"student {config.model.name} on the FSP loss against teacher {resolve_teacher_source(config)[0]}"
    return make_stage(
        config, {"name": INIT_TERM, "stem": stem}, lr, settings.epochs,
        f"FSP initialisation stage ({what}, {epochs_text(settings.epochs)})",
        teacher_side=False, teacher_overrides=UNFOLDED_TEACHER if stem else None,
    )


def _check_pair(config: Config, stem: bool) -> None:
    """RepDistiller's equal-channel check before anything trains, on fresh copies of both architectures."""
    from kdlab.models import create_model

    name, _, kwargs, classes = resolve_teacher_source(config)
    channels = []
    with torch.random.fork_rng(devices=[]):  # building networks draws initial weights: leave the RNG as it was
        for who, arch, arch_kwargs, count in (("student", config.model.name, config.model.kwargs,
                                               config.model.num_classes), ("teacher", name, kwargs, classes)):
            model = create_model(arch, num_classes=count or 10, **arch_kwargs)
            tap = make_tap(model, who) if stem else None
            fixed = getattr(model, "input_size", None)  # a ViT built for one resolution is probed at it
            size = int(fixed[0]) if fixed else 32
            channels.append(fsp_channels(model, tap, int(arch_kwargs.get("in_chans", 3)), size))
    check_equal_channels(channels[0], channels[1], config.model.name, name)


@register_term
class FSPTerm(_FSPMaps, LossTerm):
    """``fsp``: FSP as RepDistiller runs it: an initialisation stage on the FSP loss, then the main training.

    Before the main run the trainer runs ``fsp_init`` (:mod:`kdlab.methods.init_stage.stage`): the same
    student, seed, data and teacher, SGD at ``init_lr`` (null: the main ``optim.lr``, RepDistiller's
    ``opt.learning_rate``), constant, for ``init_epochs`` epochs, on the FSP loss alone; this term then loads
    that student's weights, so the main run starts from them.

    The maps are RepDistiller's ``feat[:-1]``: with ``stem: true`` the stem's output, then every stage
    (``false``: the stages only). Both networks need the same number of maps with equal channels
    (RepDistiller raises otherwise), checked before anything trains.

    The weight is the main stage's: RepDistiller's main stage has no FSP loss (``loss_kd = 0``, its
    ``-b 50`` multiplies nothing), so the recipes use weight 0, and then the term reads no features and the
    teacher is not run in the main stage (the term logs 0). A weight > 0 adds the FSP loss to the main
    stage too (needs ``teacher.fold_batchnorm: false`` with ``stem: true``).
    """

    name = "fsp"
    paper = PAPER
    uses = frozenset({"stages"})

    def __init__(
        self, ctx: BuildContext, stem: bool = True, init_epochs: int = DEFAULT_INIT_EPOCHS,
        init_lr: Optional[float] = None,
    ) -> None:
        super().__init__(ctx)
        settings = InitSettings.from_params(init_epochs, init_lr)
        use_stem = boolean("stem", stem)
        if ctx.config is None:
            raise ValueError("fsp: needs the run's config (BuildContext.config) to find its initialisation stage")
        self.stage = fsp_stage(ctx.config, use_stem, settings)
        ctx.student.load_state_dict(self.stage.tables(self.name)[0])
        self.init_only = configured_weight(ctx.config, self.name) == 0.0
        self.student_tap = self.teacher_tap = None
        if self.init_only:
            # instance attributes the Distiller reads: no features, no teacher forward in the main stage
            self.uses, self.needs_teacher = frozenset(), False
        else:
            self._setup_maps(ctx, use_stem, self.name)

    @classmethod
    def prerequisites(cls, config: Any, params: dict[str, Any]) -> list[Prerequisite]:
        """The ``fsp_init`` run (after RepDistiller's equal-channel check)."""
        def stage() -> InitStage:
            settings = InitSettings.from_params(params.get("init_epochs", DEFAULT_INIT_EPOCHS), params.get("init_lr"))
            stem = boolean("stem", params.get("stem", True))
            _check_pair(config, stem)
            return fsp_stage(config, stem, settings)

        return [checked(cls.name, stage).prerequisite()]

    def forward(self, step: StepContext) -> torch.Tensor:
        if self.init_only:
            return step.student.logits.new_zeros(())
        return self._fsp(step)

    def extra_repr(self) -> str:
        return f"init_stage={self.stage.run_dir}, init_only={self.init_only}"
