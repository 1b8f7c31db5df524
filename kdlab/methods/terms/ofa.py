"""OFA-KD as a term: student stages projected into the logit space by learned branches, distilled there."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from kdlab.losses import ofa_loss
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.modules.ofa_branches import ConvBranch, TokenBranch
from kdlab.methods.terms._features import describe_stages, require_probe, stage_index
from kdlab.methods.terms._params import non_negative, positive
from kdlab.models.features import Features


def student_stages(spec: Any, probe: Features) -> list[int]:
    """``"all"`` or a list of student stage indices (int, ``middle``, ``last``), as non-negative indices."""
    count = len(probe.stages)
    if spec == "all":
        if count == 0:
            raise ValueError("stages='all': the student exposes no stages")
        return list(range(count))
    items = [spec] if isinstance(spec, (int, str)) and not isinstance(spec, bool) else spec
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ValueError(f"stages={spec!r} must be 'all' or a non-empty list of student stage indices")
    indices = [stage_index(item, count, f"stages[{i}]", "student", probe) for i, item in enumerate(items)]
    if len(set(indices)) != len(indices):
        raise ValueError(f"stages={spec!r} names a student stage twice")
    return indices


def eps_per_branch(eps: Any, branches: int) -> list[float]:
    """One exponent per branch plus the last for the final logits (the official ``--ofa-eps`` list), or one for all."""
    if isinstance(eps, (list, tuple)):
        if len(eps) != branches + 1:
            raise ValueError(
                f"eps={list(eps)!r} must give one value per stage branch plus one for the logits ({branches + 1}), "
                "or be a single number"
            )
        return [positive(f"eps[{i}]", value) for i, value in enumerate(eps)]
    return [positive("eps", eps)] * (branches + 1)


def _width(probe: Features) -> int:
    return int(probe.embedding.shape[1]) if probe.embedding is not None else 0


@register_term
class OFATerm(LossTerm):
    """``ofa``: ``logits_weight * OFA(student logits) + stage_weight * sum_i OFA(branch_i(stage_i))``.

    Every OFA loss (:func:`kdlab.losses.ofa_loss`) is against the teacher's logits, so the teacher
    may be any family (only its logits and embedding width are read) and the student too: a CNN
    student's branches are depthwise-separable downsampling blocks, a ViT student's patch merging
    and transformer blocks (:mod:`kdlab.methods.modules.ofa_branches`, as the official code). The
    branches belong to the term (trained with the student, dropped after training).

    ``stages``: the student stages that get a branch (``all``, the official ``--ofa-stage 1 2 3 4``
    of a 4-stage network, or a list of indices). ``eps``: the target-enhancement exponent, one number
    or one per branch plus one for the logits (official ``--ofa-eps``: 1 on CIFAR-100, 1.5 in the
    README's ImageNet example). ``temperature`` (official 1), ``stage_weight`` (``--ofa-loss-weight``,
    1) and ``logits_weight`` (``--kd-loss-weight``, 1) are the official defaults; the official run adds
    cross-entropy (``--gt-loss-weight`` 1, with label smoothing 0.1): ``terms: [{name: ce,
    label_smoothing: 0.1}, {name: ofa}]``. Logs ``ofa/logits`` and ``ofa/stage<i>`` per branch.

    A CNN branch halves its stage ``round(log2(H_i / H_deepest))`` times (the official ``4 - stage``
    for a 4-stage network whose stages halve) and ends at the larger of both embedding widths; a ViT
    branch runs ``max(n - 1 - i, 1)`` blocks (the official ``max(4 - stage, 1)``) at the student's width.
    """

    name = "ofa"
    paper = (
        "Hao et al., One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge Distillation, "
        "NeurIPS 2023"
    )
    needs_labels = True
    uses = frozenset({"logits", "stages"})
    cacheable = True  # the teacher's logits only

    def __init__(
        self,
        ctx: BuildContext,
        stages: object = "all",
        eps: float | list[float] = 1.0,
        temperature: float = 1.0,
        stage_weight: float = 1.0,
        logits_weight: float = 1.0,
    ) -> None:
        super().__init__(ctx)
        student = require_probe(ctx.student_probe, "student", self.name)
        teacher = require_probe(ctx.teacher_probe, "teacher", self.name)
        self.stage_indices = student_stages(stages, student)
        self.eps = eps_per_branch(eps, len(self.stage_indices))
        self.temperature = positive("temperature", temperature)
        self.stage_weight = non_negative("stage_weight", stage_weight)
        self.logits_weight = non_negative("logits_weight", logits_weight)
        maps = [student.stages[i] for i in self.stage_indices]
        flat = [i for i, m in zip(self.stage_indices, maps) if m.dim() != 4]
        if flat:
            raise ValueError(
                f"ofa: student stages {flat} are not feature maps (B, C, H, W) [{describe_stages(student)}]"
            )
        self.token_student = bool(getattr(ctx.student, "is_token_model", False))
        student_width, teacher_width = _width(student), _width(teacher)
        deepest = int(student.stages[-1].shape[-2])
        count = len(student.stages)
        branches: list[nn.Module] = []
        for i, stage in zip(self.stage_indices, maps):
            channels, height, width = (int(d) for d in stage.shape[1:])
            if self.token_student:
                branches.append(TokenBranch(channels, (height, width), student_width, max(count - 1 - i, 1),
                                            ctx.num_classes))
            else:
                halvings = max(round(math.log2(height / deepest)), 0) if deepest > 0 else 0
                branches.append(ConvBranch(channels, halvings, max(student_width, teacher_width), ctx.num_classes))
        self.branches = nn.ModuleList(branches)

    def forward(self, step: StepContext) -> dict[str, torch.Tensor]:
        assert step.teacher is not None and step.targets is not None
        teacher = step.teacher.logits
        parts = {
            f"stage{i}": ofa_loss(branch(step.student.stages[i]), teacher, step.targets, eps, self.temperature)
            for i, branch, eps in zip(self.stage_indices, self.branches, self.eps)
        }
        logits = ofa_loss(step.student.logits, teacher, step.targets, self.eps[-1], self.temperature)
        loss = self.logits_weight * logits + self.stage_weight * torch.stack(list(parts.values())).sum()
        return {"loss": loss, "logits": logits, **parts}

    def extra_repr(self) -> str:
        family = "vit" if self.token_student else "cnn"
        return f"stages={self.stage_indices}, student={family}, eps={self.eps}, temperature={self.temperature}"
