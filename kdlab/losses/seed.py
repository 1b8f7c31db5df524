r"""SEED: self-supervised distillation for visual representation.

Fang, Wang, Wang, Zhang, Yang & Liu, "SEED: Self-supervised Distillation For
Visual Representation", ICLR 2021.

Student and teacher embeddings :math:`s_b, t_b` and a queue
:math:`\{q_j\}_{j=1}^{Q}` of past teacher embeddings are L2-normalised. Both
networks score the anchor set :math:`[t_b, q_1, \dots, q_Q]`:

.. math::

    p^t_b = \mathrm{softmax}\!\left(\frac{[t_b \cdot t_b,\; t_b \cdot q_j]}{\tau_t}\right), \qquad
    \log p^s_b = \mathrm{log\,softmax}\!\left(\frac{[s_b \cdot t_b,\; s_b \cdot q_j]}{\tau_s}\right)

.. math::

    \mathcal{L}_{SEED} = \frac{1}{B} \sum_b \sum_{j=0}^{Q} -p^t_{b,j} \log p^s_{b,j}

(:math:`t_b \cdot t_b = 1`.) The queue is a FIFO of teacher embeddings,
updated after each step with :func:`seed_update_queue`; it lives in the method.
Defaults: student 0.2, teacher 1e-4 (a nearly one-hot target on the sample
itself, softened only by near-duplicates in the queue). The released code's
argument defaults are 0.07 (student) and 1e-4 (teacher); set them per
experiment.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import (
    check_min_batch,
    check_ndim,
    check_positive,
    check_same_dim,
    check_same_shape,
    shape_str,
    upcast,
)


def seed_loss(
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    queue: Tensor,
    student_temperature: float = 0.2,
    teacher_temperature: float = 1e-4,
) -> Tensor:
    """SEED soft cross-entropy between teacher and student similarity distributions.

    Args:
        student_embedding: (B, D) student embeddings (projected to the teacher's dim).
        teacher_embedding: (B, D) teacher embeddings.
        queue: (Q, D) queue of past teacher embeddings (normalised again here;
            Q may be 0, which leaves only the positive and gives a loss of 0).
        student_temperature: tau_s > 0.
        teacher_temperature: tau_t > 0.

    Returns:
        Scalar tensor.
    """
    fn = "seed_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_same_shape(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    check_min_batch(fn, "student_embedding", student_embedding, 1)
    check_ndim(fn, "queue", queue, 2, "(queue_size, dim)")
    check_same_dim(fn, "queue", queue, "teacher_embedding", teacher_embedding, 1, "embedding dim")
    check_positive(fn, "student_temperature", student_temperature)
    check_positive(fn, "teacher_temperature", teacher_temperature)

    student, teacher, memory = upcast(student_embedding, teacher_embedding, queue)
    student = F.normalize(student, dim=1)
    teacher = F.normalize(teacher, dim=1)
    memory = F.normalize(memory, dim=1)
    anchors_student = torch.cat([(student * teacher).sum(dim=1, keepdim=True), student @ memory.T], dim=1)
    anchors_teacher = torch.cat([(teacher * teacher).sum(dim=1, keepdim=True), teacher @ memory.T], dim=1)
    log_p_student = F.log_softmax(anchors_student / student_temperature, dim=1)
    p_teacher = F.softmax(anchors_teacher / teacher_temperature, dim=1)
    return -(p_teacher * log_p_student).sum(dim=1).mean()


def seed_update_queue(queue: Tensor, ptr: int, new: Tensor) -> tuple[Tensor, int]:
    """FIFO enqueue of ``new`` rows at ``ptr``, wrapping around; returns ``(new_queue, new_ptr)``.

    Pure: ``queue`` is not modified. The rows are detached and L2-normalised on
    the way in (the queue holds unit teacher embeddings) and cast to the
    queue's dtype.

    Args:
        queue: (Q, D) current queue.
        ptr: index in [0, Q) of the oldest row, where writing starts.
        new: (n, D) rows to enqueue, n <= Q.
    """
    fn = "seed_update_queue"
    check_ndim(fn, "queue", queue, 2, "(queue_size, dim)")
    check_ndim(fn, "new", new, 2, "(batch, dim)")
    check_same_dim(fn, "queue", queue, "new", new, 1, "embedding dim")
    size = queue.shape[0]
    if new.shape[0] > size:
        raise ValueError(f"{fn}: cannot enqueue new {shape_str(new)} into a queue {shape_str(queue)} with fewer rows")
    if not 0 <= ptr < max(size, 1):
        raise ValueError(f"{fn}: ptr must be in [0, {size}), got {ptr}")
    if new.shape[0] == 0:
        return queue.clone(), ptr
    with torch.no_grad():
        rows = F.normalize(upcast(new)[0], dim=1).to(device=queue.device, dtype=queue.dtype)
        positions = (ptr + torch.arange(new.shape[0], device=queue.device)) % size
        updated = queue.detach().clone()
        updated[positions] = rows
    return updated, int((ptr + new.shape[0]) % size)


class SEEDLoss(nn.Module):
    """Module form of :func:`seed_loss`; stores the two temperatures (the queue lives in the method)."""

    def __init__(self, student_temperature: float = 0.2, teacher_temperature: float = 1e-4) -> None:
        super().__init__()
        check_positive("SEEDLoss", "student_temperature", student_temperature)
        check_positive("SEEDLoss", "teacher_temperature", teacher_temperature)
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature

    def forward(self, student_embedding: Tensor, teacher_embedding: Tensor, queue: Tensor) -> Tensor:
        return seed_loss(
            student_embedding,
            teacher_embedding,
            queue,
            student_temperature=self.student_temperature,
            teacher_temperature=self.teacher_temperature,
        )

    def extra_repr(self) -> str:
        return f"student_temperature={self.student_temperature}, teacher_temperature={self.teacher_temperature}"


__all__ = ["SEEDLoss", "seed_loss", "seed_update_queue"]
