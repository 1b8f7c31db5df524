"""Which feature a loss term reads, chosen by a config value.

Feature-based terms take a parameter such as ``stage: -1`` or
``feature: embedding``. The value is resolved once, at build time, against
the dry-run :class:`~kdlab.models.features.Features` of the network
(``ctx.student_probe`` / ``ctx.teacher_probe``), so a bad index fails when the
run is built, naming the parameter and the stages that exist, instead of
failing with an IndexError in the first step.

Accepted values:

- an integer: index into the network's ``stages`` (negative counts from the deepest);
- ``"embedding"``: the pooled, flattened classifier input;
- ``"middle"``: stage ``(n - 1) // 2`` of the n stages. For every zoo network this is
  the layer RepDistiller calls ``hint_layer=2`` (its feature list starts with the
  stem, ours does not, except VGG whose first stage *is* RepDistiller's block 0).
- ``"last"``: the deepest stage (same as ``-1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from kdlab.models.features import Features

FeatureSpec = Union[int, str]

EMBEDDING = "embedding"
_NAMED_STAGES = ("middle", "last")


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def describe_stages(probe: Features) -> str:
    """``0: (2, 16, 32, 32), 1: ...`` for error messages."""
    return ", ".join(f"{i}: {_shape(s)}" for i, s in enumerate(probe.stages)) or "none"


def require_probe(probe: Optional[Features], who: str, term: str) -> Features:
    """The dry-run features of ``who`` (student/teacher), or a ValueError saying why they are needed."""
    if probe is None:
        raise ValueError(
            f"{term}: needs the {who}'s feature shapes (BuildContext.{who}_probe) to choose features and size adapters"
        )
    return probe


@dataclass(frozen=True)
class FeatureRef:
    """A resolved feature location: the embedding, or one stage by its non-negative index."""

    kind: str  # "embedding" or "stage"
    index: int = -1

    def take(self, features: Features) -> torch.Tensor:
        """The selected tensor of one forward pass."""
        if self.kind == EMBEDDING:
            if features.embedding is None:
                raise ValueError("this term reads the embedding, but the forward pass produced none")
            return features.embedding
        if self.index >= len(features.stages):
            raise ValueError(
                f"this term reads stage {self.index}, but the forward pass produced {len(features.stages)} stages"
            )
        return features.stages[self.index]

    @property
    def uses(self) -> str:
        """The :class:`Features` field read (the ``uses`` vocabulary of LossTerm)."""
        return EMBEDDING if self.kind == EMBEDDING else "stages"

    def __str__(self) -> str:
        return EMBEDDING if self.kind == EMBEDDING else f"stage {self.index}"


def stage_index(spec: Any, num_stages: int, param: str, network: str, probe: Features) -> int:
    """A stage spec (int, "middle", "last") as a non-negative index, or ValueError naming ``param``."""
    if num_stages == 0:
        raise ValueError(f"{param}={spec!r}: the {network} exposes no stages")
    if spec == "middle":
        return (num_stages - 1) // 2
    if spec == "last":
        return num_stages - 1
    if isinstance(spec, bool) or not isinstance(spec, int):
        raise ValueError(
            f"{param}={spec!r} must be a stage index (int), 'middle', 'last' or '{EMBEDDING}'"
        )
    if not -num_stages <= spec < num_stages:
        raise ValueError(
            f"{param}={spec} is out of range: the {network} has {num_stages} stages "
            f"[{describe_stages(probe)}]"
        )
    return spec % num_stages


def resolve_feature(spec: Any, probe: Features, param: str, network: str, allow_embedding: bool = True) -> FeatureRef:
    """Resolve a config value (see the module docstring) against a network's dry-run features."""
    if spec == EMBEDDING:
        if not allow_embedding:
            raise ValueError(f"{param}={spec!r}: this term needs a stage (feature map), not the embedding")
        return FeatureRef(EMBEDDING)
    if isinstance(spec, str) and spec not in _NAMED_STAGES:
        raise ValueError(
            f"{param}={spec!r} must be a stage index (int), 'middle', 'last'"
            + (f" or '{EMBEDDING}'" if allow_embedding else "")
        )
    return FeatureRef("stage", stage_index(spec, len(probe.stages), param, network, probe))


def stage_pairs(
    spec: Any, student: Features, teacher: Features, param: str = "stages"
) -> list[tuple[int, int]]:
    """(student index, teacher index) pairs for multi-stage terms such as AT.

    ``"all"`` pairs the deepest ``min(n_s, n_t)`` stages of both networks,
    aligned at the deepest stage (a VGG's 5 stages against a MobileNetV2's 4
    drop VGG's first, as RepDistiller's ``feat[1:-1]`` does). A list of
    indices selects those stages in both networks (each index resolved
    against each network's own stage list).
    """
    n_s, n_t = len(student.stages), len(teacher.stages)
    if n_s == 0 or n_t == 0:
        raise ValueError(f"{param}: both networks need stages (student has {n_s}, teacher has {n_t})")
    if spec == "all":
        common = min(n_s, n_t)
        return [(n_s - common + i, n_t - common + i) for i in range(common)]
    if isinstance(spec, (int, str)) and not isinstance(spec, bool):
        spec = [spec]
    if not isinstance(spec, Sequence) or not spec:
        raise ValueError(f"{param}={spec!r} must be 'all' or a non-empty list of stage indices")
    pairs = []
    for i, item in enumerate(spec):
        s = stage_index(item, n_s, f"{param}[{i}]", "student", student)
        t = stage_index(item, n_t, f"{param}[{i}]", "teacher", teacher)
        pairs.append((s, t))
    return pairs


def flat_dim(probe: Features, ref: FeatureRef) -> int:
    """Number of values per sample of the selected feature (after flattening)."""
    return int(ref.take(probe)[0].numel())


def resolve_for_both(
    spec: Any, student: Optional[Features], teacher: Optional[Features], param: str, term: str
) -> tuple[FeatureRef, FeatureRef]:
    """The same feature spec resolved in the student and in the teacher."""
    return (
        resolve_feature(spec, require_probe(student, "student", term), param, "student"),
        resolve_feature(spec, require_probe(teacher, "teacher", term), param, "teacher"),
    )


def reduce_stage_parts(
    parts: dict[str, torch.Tensor], reduction: str
) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
    """A per-stage-pair term's output: the parts summed or averaged, each part logged when there are several."""
    values = torch.stack(list(parts.values()))
    loss = values.sum() if reduction == "sum" else values.mean()
    if len(parts) == 1:
        return loss
    return {"loss": loss, **parts}


def embedding_inputs(term: Any, feature: Any, ctx: Any) -> tuple[int, int]:
    """Resolve ``feature`` for both networks onto ``term`` (its features, ``uses``, ``cacheable``).

    For the terms that project one flattened feature of each network (CRD, CC). Returns the
    flat widths (student, teacher) their projections take.
    """
    term.student_feature, term.teacher_feature = resolve_for_both(
        feature, ctx.student_probe, ctx.teacher_probe, "feature", term.name
    )
    term.uses = frozenset({term.student_feature.uses})
    term.cacheable = feature == EMBEDDING
    return flat_dim(ctx.student_probe, term.student_feature), flat_dim(ctx.teacher_probe, term.teacher_feature)
