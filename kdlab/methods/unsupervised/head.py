"""The student projection head and the base of every embedding-to-embedding term.

Label-free distillation compares the student's pooled embedding with the
teacher's. When their widths differ, the student gets a projection head
``Linear(d_s, h) - ReLU - Linear(h, d_t)`` (CoSS, SEED); when they match, the
embedding is compared as is. The head belongs to the loss term: it is trained
with the student, saved in the checkpoint's ``method`` entry, used only by the
loss, and evaluation measures the backbone embedding (the head's output is
reported as an extra through :meth:`EmbeddingTerm.eval_embedding`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from kdlab.methods.base import BuildContext, LossTerm, StepContext


def projection_head(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    """``Linear(in_dim, hidden) - ReLU - Linear(hidden, out_dim)``, or ``nn.Identity`` when the dims match.

    Args:
        in_dim: the student's embedding width d_s.
        out_dim: the teacher's embedding width d_t.
        hidden: width h of the hidden layer (only used when ``in_dim != out_dim``).
    """
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"projection_head: {name} must be an int >= 1, got {value!r}")
    if in_dim == out_dim:
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def _embedding_width(probe: object, model: Optional[nn.Module], who: str) -> int:
    """Width of the pooled embedding, from the build-time dry run (or the model's ``embedding_dim``)."""
    embedding = getattr(probe, "embedding", None)
    if isinstance(embedding, torch.Tensor):
        if embedding.dim() != 2:
            raise ValueError(f"the {who}'s embedding must be (B, D), got shape {tuple(embedding.shape)}")
        return int(embedding.shape[1])
    width = getattr(model, "embedding_dim", None)
    if isinstance(width, int) and width > 0:
        return width
    raise ValueError(f"cannot tell the {who}'s embedding width: no feature probe and no embedding_dim attribute")


class EmbeddingTerm(LossTerm):
    """A term comparing (projected) student embeddings with teacher embeddings; never reads labels.

    Subclasses implement :meth:`forward` with :meth:`embeddings`. ``head_hidden``
    (a term parameter) overrides ``distill.head_hidden`` for this term.
    """

    needs_teacher = True
    needs_labels = False
    uses = frozenset({"embedding"})
    #: only the teacher's embedding is read, so a teacher-output cache can feed it
    cacheable = True

    def __init__(self, ctx: BuildContext, head_hidden: Optional[int] = None) -> None:
        super().__init__(ctx)
        if ctx.teacher is None and ctx.teacher_probe is None:
            raise ValueError(f"term {self.name} needs a teacher (set teacher.name and teacher.checkpoint)")
        hidden = ctx.head_hidden if head_hidden is None else head_hidden
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"head_hidden must be an int >= 1, got {hidden!r}")
        self.student_dim = _embedding_width(ctx.student_probe, ctx.student, "student")
        self.teacher_dim = _embedding_width(ctx.teacher_probe, ctx.teacher, "teacher")
        self.head = projection_head(self.student_dim, self.teacher_dim, hidden)

    @property
    def has_head(self) -> bool:
        """True when the student is projected (its width differs from the teacher's)."""
        return not isinstance(self.head, nn.Identity)

    def embeddings(self, step: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """``(projected student embedding, teacher embedding)``, both (B, d_t)."""
        student = step.student.embedding
        teacher = step.teacher.embedding if step.teacher is not None else None
        if student is None or teacher is None:
            raise ValueError(f"term {self.name} needs the student and teacher embeddings; the step carries none")
        projected = self.head(student)
        if projected.shape != teacher.shape:
            raise ValueError(
                f"term {self.name}: projected student embedding {tuple(projected.shape)} does not match the "
                f"teacher embedding {tuple(teacher.shape)}"
            )
        return projected, teacher.detach()

    def eval_embedding(self, student_embedding: torch.Tensor) -> Optional[torch.Tensor]:
        """The head's output (what the loss compares with the teacher); None without a head."""
        if not self.has_head:
            return None
        return self.head(student_embedding)

    def extra_repr(self) -> str:
        return f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}"
