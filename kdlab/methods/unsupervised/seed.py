"""``seed``: SEED, the student matches the teacher's similarity distribution over a queue.

Fang et al., "SEED: Self-supervised Distillation For Visual Representation",
ICLR 2021. The loss is :func:`kdlab.losses.seed_loss`; the queue of past
teacher embeddings is a buffer of this term (so it is checkpointed and resumes
exactly, pointer included) and is updated FIFO after the loss, with the
teacher embeddings of every process (as the official code does).

Memory: the queue is ``queue_size x d_t`` float32 (65,536 x 2048 = 512 MiB for
a ResNet-50 teacher); lower ``queue_size`` on small data.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from kdlab.collectives import all_gather_rows
from kdlab.losses import seed_loss
from kdlab.methods.base import BuildContext, StepContext, register_term
from kdlab.methods.unsupervised.head import EmbeddingTerm


@register_term
class SEEDTerm(EmbeddingTerm):
    """``seed``: soft cross-entropy between teacher (T=1e-4) and student (T=0.2) over [t_b, queue]."""

    name = "seed"
    paper = "Fang et al., SEED: Self-supervised Distillation For Visual Representation, ICLR 2021"

    def __init__(
        self,
        ctx: BuildContext,
        queue_size: int = 65536,
        student_temperature: float = 0.2,
        teacher_temperature: float = 1e-4,
        head_hidden: Optional[int] = None,
    ) -> None:
        super().__init__(ctx, head_hidden=head_hidden)
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        for key, value in (("student_temperature", student_temperature), ("teacher_temperature", teacher_temperature)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{key} must be a number > 0, got {value!r}")
        batch = getattr(getattr(ctx.config, "data", None), "batch_size", None)
        if isinstance(batch, int) and batch > queue_size:
            raise ValueError(f"queue_size={queue_size} must be >= the global batch data.batch_size={batch}")
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        # A fixed generator: the queue's start does not depend on (or disturb) the global RNG stream.
        generator = torch.Generator().manual_seed(ctx.seed)
        queue = F.normalize(torch.randn(queue_size, self.teacher_dim, generator=generator), dim=1)
        self.register_buffer("queue", queue)
        #: index of the oldest row, where the next enqueue starts (a tensor: saved with the buffers)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, step: StepContext) -> torch.Tensor:
        student, teacher = self.embeddings(step)
        loss = seed_loss(
            student,
            teacher,
            self.queue,
            student_temperature=self.student_temperature,
            teacher_temperature=self.teacher_temperature,
        )
        if self.training:
            self.enqueue(all_gather_rows(teacher))
        return loss

    @torch.no_grad()
    def enqueue(self, rows: torch.Tensor) -> None:
        """Write ``rows`` (n, d_t), L2-normalised, over the oldest queue entries and advance the pointer.

        Same result as :func:`kdlab.losses.seed_update_queue`, but in place and without
        reading the pointer on the host (no device sync, no copy of the whole queue).
        The loss of this step holds a normalised copy of the queue, so overwriting the
        buffer afterwards does not touch its autograd graph.
        """
        size = self.queue.shape[0]
        if rows.dim() != 2 or rows.shape[1] != self.queue.shape[1]:
            raise ValueError(f"seed enqueue: rows must be (n, {self.queue.shape[1]}), got {tuple(rows.shape)}")
        if rows.shape[0] > size:
            raise ValueError(f"seed enqueue: {rows.shape[0]} rows do not fit a queue of {size}")
        positions = (self.queue_ptr + torch.arange(rows.shape[0], device=self.queue.device)) % size
        self.queue[positions] = F.normalize(rows.float(), dim=1).to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + rows.shape[0]) % size)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, queue_size={self.queue.shape[0]}, "
            f"student_temperature={self.student_temperature}, teacher_temperature={self.teacher_temperature}"
        )
