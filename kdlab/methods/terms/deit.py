"""DeiT's distillation token as a term: class head on the labels, distillation head on the teacher."""

from __future__ import annotations

from typing import Optional

import torch

from kdlab.losses import deit_loss_parts
from kdlab.losses.deit import DISTILLATION_KINDS, SOFT_NORMALIZATIONS
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._params import choice, fraction, positive

#: the official ``--distillation-tau`` default
DEFAULT_TEMPERATURE = 1.0


def _network_name(model: object) -> str:
    return str(getattr(model, "name", type(model).__name__))


@register_term
class DeiTTerm(LossTerm):
    """``deit``: ``(1 - alpha) * CE(class head, labels) + alpha * distillation(distillation head, teacher)``.

    For students with a distillation token (``timm:deit_*_distilled_*``): at build time the term
    switches the student to timm's distilled training, so in training its logits are the class
    token's head and ``Features.distillation_logits`` the distillation token's; at evaluation the
    model returns the average of both heads, as DeiT evaluates. Any other student is an error.

    ``distillation``: ``hard`` (default; CE of the distillation head against the teacher's argmax,
    DeiT's headline models) or ``soft`` (KL at ``temperature``, default 1.0, the official ``tau``;
    ``soft_normalization``: ``elements`` divides the KL sum by B*K as the official code, ``batch`` by
    B). ``alpha`` (official 0.5) weighs the distillation part; ``label_smoothing`` (DeiT's 0.1) is the
    class head's CE smoothing (see :mod:`kdlab.losses.deit`). The term includes the class head's CE:
    a DeiT recipe is ``terms: [{name: deit}]`` alone (an extra ``ce`` term would train the class head
    twice). Logs ``deit/ce`` and ``deit/distillation``.
    """

    name = "deit"
    paper = "Touvron et al., Training data-efficient image transformers & distillation through attention, ICML 2021"
    needs_labels = True
    uses = frozenset({"logits", "distillation_logits"})
    cacheable = True  # the teacher's logits only

    def __init__(
        self,
        ctx: BuildContext,
        distillation: str = "hard",
        alpha: float = 0.5,
        temperature: Optional[float] = None,
        label_smoothing: float = 0.1,
        soft_normalization: str = "elements",
    ) -> None:
        super().__init__(ctx)
        self.distillation = choice("distillation", distillation, DISTILLATION_KINDS)
        self.alpha = fraction("alpha", alpha)
        if temperature is not None and self.distillation == "hard":
            raise ValueError(
                f"temperature={temperature!r} applies to distillation: soft only (hard distillation uses the "
                "teacher's argmax); remove it or set distillation: soft"
            )
        self.temperature = DEFAULT_TEMPERATURE if temperature is None else positive("temperature", temperature)
        if not isinstance(label_smoothing, (int, float)) or isinstance(label_smoothing, bool) or not (
            0.0 <= label_smoothing < 1.0
        ):
            raise ValueError(f"label_smoothing={label_smoothing!r} must be a number in [0, 1)")
        self.label_smoothing = float(label_smoothing)
        self.soft_normalization = choice("soft_normalization", soft_normalization, SOFT_NORMALIZATIONS)
        student = ctx.student
        if not getattr(student, "has_distillation_token", False):
            tokens = list(getattr(student, "prefix_names", ()))
            has = f"its prefix tokens are {tokens}" if tokens else "it has no prefix tokens"
            raise ValueError(
                f"deit: the student {_network_name(student)} has no distillation token ({has}); DeiT distillation "
                "needs a distilled DeiT such as timm:deit_tiny_distilled_patch16_224 (other students: use kd)"
            )
        student.set_distilled_training(True)  # type: ignore[operator]

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        assert step.teacher is not None and step.targets is not None
        distillation_logits = step.student.distillation_logits
        if distillation_logits is None:
            raise ValueError(
                "deit: the student's forward pass gave no distillation-head logits (the term needs the student in "
                "training mode with distilled training on, as the term's build sets it)"
            )
        parts = deit_loss_parts(
            step.student.logits, distillation_logits, step.teacher.logits, step.targets, self.distillation,
            self.temperature, self.label_smoothing, self.soft_normalization,
        )
        loss = (1.0 - self.alpha) * parts["ce"] + self.alpha * parts["distillation"]
        return {"loss": loss, **parts}

    def extra_repr(self) -> str:
        soft = f", temperature={self.temperature}, soft_normalization={self.soft_normalization}"
        return (
            f"distillation={self.distillation}, alpha={self.alpha}, label_smoothing={self.label_smoothing}"
            + (soft if self.distillation == "soft" else "")
        )
