r"""Contrastive representation distillation (CRD), NCE objective of the official code.

Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020.

Student and teacher features are projected to L2-normalised embeddings
:math:`v^s_b, v^t_b \in \mathbb{R}^D` (D = 128). Each modality keeps a memory
bank with one row per training image. For sample b, ``N + 1`` bank indices are
drawn: index 0 is the sample's own dataset index (the positive), indices
1..N are noise samples. The student anchor is scored against the *teacher*
bank rows and the teacher anchor against the *student* bank rows:

.. math::

    P_{b,n} = \frac{\exp(\langle v^s_b, u^t_{b,n} \rangle / T)}{Z}, \qquad
    Z \approx \overline{\exp(\langle v, u \rangle / T)} \cdot N_{data}

With the uniform noise distribution :math:`P_n = 1 / N_{data}`,

.. math::

    \mathcal{L}_{dir} = -\frac{1}{B} \sum_b \left[
        \log \frac{P_{b,0}}{P_{b,0} + N P_n}
        + \sum_{n=1}^{N} \log \frac{N P_n}{P_{b,n} + N P_n} \right]

and :math:`\mathcal{L}_{CRD} = \mathcal{L}_{student \to teacher bank} + \mathcal{L}_{teacher \to student bank}`.

Z is a constant per direction. The official code estimates it from the first
batch and then freezes it; :func:`crd_normalizers` gives those estimates so a
method can do the same and pass them as ``normalizer``. Left at ``None``, Z is
estimated from the current batch (and not differentiated). The log-ratios are
computed in log space, so the official ``eps = 1e-7`` guard is not needed.

The memory banks themselves live in the method; :func:`crd_update_memory` is the
pure momentum update of their rows.
"""

from __future__ import annotations

import math

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


def crd_loss(
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    student_bank_negatives: Tensor,
    teacher_bank_negatives: Tensor,
    temperature: float = 0.07,
    num_data: int | None = None,
    normalizer: tuple[float, float] | None = None,
) -> Tensor:
    """CRD NCE loss summed over the two directions.

    Args:
        student_embedding: (B, D) L2-normalised student projection (the anchor
            scored against ``teacher_bank_negatives``).
        teacher_embedding: (B, D) L2-normalised teacher projection (the anchor
            scored against ``student_bank_negatives``).
        student_bank_negatives: (B, N+1, D) rows of the student memory bank;
            ``[:, 0]`` is the row of each sample's own dataset index (positive),
            ``[:, 1:]`` are the N noise rows.
        teacher_bank_negatives: (B, N+1, D) rows of the teacher memory bank, same layout
            (and normally the same indices).
        temperature: T > 0 (official: 0.07).
        num_data: number of training images N_data (required); sets P_n = 1 / N_data.
        normalizer: ``(Z_student_anchor, Z_teacher_anchor)``; ``None`` estimates each
            as ``mean(exp(scores / T)) * num_data`` from this batch.

    Returns:
        Scalar tensor.
    """
    fn = "crd_loss"
    check_ndim(fn, "student_embedding", student_embedding, 2, "(batch, dim)")
    check_same_shape(fn, "student_embedding", student_embedding, "teacher_embedding", teacher_embedding)
    check_min_batch(fn, "student_embedding", student_embedding, 1)
    check_ndim(fn, "student_bank_negatives", student_bank_negatives, 3, "(batch, N+1, dim)")
    check_same_shape(
        fn, "student_bank_negatives", student_bank_negatives, "teacher_bank_negatives", teacher_bank_negatives
    )
    batch_size, dim = student_embedding.shape
    if student_bank_negatives.shape[0] != batch_size or student_bank_negatives.shape[2] != dim:
        raise ValueError(
            f"{fn}: student_bank_negatives {shape_str(student_bank_negatives)} must have shape "
            f"({batch_size}, N+1, {dim}) to match student_embedding {shape_str(student_embedding)}"
        )
    if student_bank_negatives.shape[1] < 2:
        raise ValueError(
            f"{fn}: student_bank_negatives {shape_str(student_bank_negatives)} needs the positive "
            "plus at least one negative along dimension 1"
        )
    check_positive(fn, "temperature", temperature)
    if num_data is None:
        raise ValueError(f"{fn}: num_data (the number of training samples, N_data) is required")
    check_positive(fn, "num_data", num_data)
    if normalizer is not None and len(normalizer) != 2:
        raise ValueError(f"{fn}: normalizer must be (Z_student_anchor, Z_teacher_anchor), got {normalizer!r}")

    student, teacher, student_bank, teacher_bank = upcast(
        student_embedding, teacher_embedding, student_bank_negatives, teacher_bank_negatives
    )
    student_scores = _scores(student, teacher_bank, temperature)
    teacher_scores = _scores(teacher, student_bank, temperature)
    if normalizer is None:
        log_z_student = _estimate_log_normalizer(student_scores, num_data)
        log_z_teacher = _estimate_log_normalizer(teacher_scores, num_data)
    else:
        z_student, z_teacher = float(normalizer[0]), float(normalizer[1])
        check_positive(fn, "normalizer[0]", z_student)
        check_positive(fn, "normalizer[1]", z_teacher)
        log_z_student, log_z_teacher = math.log(z_student), math.log(z_teacher)
    return _nce_loss(student_scores, log_z_student, num_data) + _nce_loss(teacher_scores, log_z_teacher, num_data)


def crd_normalizers(
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    student_bank_negatives: Tensor,
    teacher_bank_negatives: Tensor,
    temperature: float,
    num_data: int,
) -> tuple[float, float]:
    """Batch estimates ``(Z_student_anchor, Z_teacher_anchor)`` = ``mean(exp(scores / T)) * num_data``.

    Same arguments and layout as :func:`crd_loss`. The official code computes
    this once, on the first batch, and keeps it fixed for the whole training.
    """
    check_positive("crd_normalizers", "temperature", temperature)
    check_positive("crd_normalizers", "num_data", num_data)
    with torch.no_grad():
        student, teacher, student_bank, teacher_bank = upcast(
            student_embedding, teacher_embedding, student_bank_negatives, teacher_bank_negatives
        )
        log_z_student = _estimate_log_normalizer(_scores(student, teacher_bank, temperature), num_data)
        log_z_teacher = _estimate_log_normalizer(_scores(teacher, student_bank, temperature), num_data)
    return math.exp(log_z_student), math.exp(log_z_teacher)


def crd_update_memory(bank: Tensor, indices: Tensor, new: Tensor, momentum: float = 0.5) -> Tensor:
    """Momentum update of memory-bank rows: ``normalize(momentum * bank[indices] + (1 - momentum) * new)``.

    Pure: ``bank`` is not modified; the caller writes the returned rows back
    (e.g. ``bank.index_copy_(0, indices, rows)``). Runs without autograd since a
    memory bank is never differentiated.

    Args:
        bank: (N_data, D) memory bank.
        indices: (B,) integer dataset indices of the batch.
        new: (B, D) the batch's new embeddings.
        momentum: weight of the old row, in [0, 1] (official: 0.5).

    Returns:
        (B, D) updated, L2-normalised rows in the bank's dtype.
    """
    fn = "crd_update_memory"
    check_ndim(fn, "bank", bank, 2, "(num_data, dim)")
    check_ndim(fn, "new", new, 2, "(batch, dim)")
    check_same_dim(fn, "bank", bank, "new", new, 1, "embedding dim")
    if indices.ndim != 1 or indices.shape[0] != new.shape[0]:
        raise ValueError(
            f"{fn}: indices must have shape ({new.shape[0]},) to match new {shape_str(new)}, got {shape_str(indices)}"
        )
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"{fn}: indices must be integer, got dtype {indices.dtype}")
    if indices.numel() > 0 and (int(indices.min()) < 0 or int(indices.max()) >= bank.shape[0]):
        raise ValueError(
            f"{fn}: indices must lie in [0, {bank.shape[0]}), got values in "
            f"[{int(indices.min())}, {int(indices.max())}]"
        )
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{fn}: momentum must be in [0, 1], got {momentum}")
    with torch.no_grad():
        old_rows, new_rows = upcast(bank.index_select(0, indices.to(bank.device)), new.to(bank.device))
        mixed = momentum * old_rows + (1.0 - momentum) * new_rows
        return F.normalize(mixed, dim=1).to(bank.dtype)


def _scores(anchor: Tensor, bank_rows: Tensor, temperature: float) -> Tensor:
    """(B, D) anchors x (B, N+1, D) rows -> (B, N+1) logits <v, u> / T."""
    return torch.einsum("bd,bnd->bn", anchor, bank_rows) / temperature


def _estimate_log_normalizer(scores: Tensor, num_data: int) -> float:
    """log(mean(exp(scores)) * num_data), via logsumexp so large scores cannot overflow."""
    log_mean = torch.logsumexp(scores.detach().flatten(), dim=0) - math.log(scores.numel())
    return float(log_mean) + math.log(num_data)


def _nce_loss(scores: Tensor, log_normalizer: float, num_data: int) -> Tensor:
    """NCE binary loss of one direction; ``scores`` (B, N+1) are <v, u> / T with the positive at 0."""
    num_negatives = scores.shape[1] - 1
    log_noise_mass = math.log(num_negatives / num_data)  # log(N * P_n)
    log_p = scores - log_normalizer
    log_denominator = torch.logaddexp(log_p, torch.full_like(log_p, log_noise_mass))
    log_d_positive = log_p[:, 0] - log_denominator[:, 0]
    log_d_negative = log_noise_mass - log_denominator[:, 1:]
    return -(log_d_positive.sum() + log_d_negative.sum()) / scores.shape[0]


class CRDLoss(nn.Module):
    """Module form of :func:`crd_loss` (the function only: memory banks and projections live in the method)."""

    def __init__(self, num_data: int, temperature: float = 0.07) -> None:
        super().__init__()
        check_positive("CRDLoss", "num_data", num_data)
        check_positive("CRDLoss", "temperature", temperature)
        self.num_data = num_data
        self.temperature = temperature

    def forward(
        self,
        student_embedding: Tensor,
        teacher_embedding: Tensor,
        student_bank_negatives: Tensor,
        teacher_bank_negatives: Tensor,
        normalizer: tuple[float, float] | None = None,
    ) -> Tensor:
        return crd_loss(
            student_embedding,
            teacher_embedding,
            student_bank_negatives,
            teacher_bank_negatives,
            temperature=self.temperature,
            num_data=self.num_data,
            normalizer=normalizer,
        )

    def extra_repr(self) -> str:
        return f"num_data={self.num_data}, temperature={self.temperature}"


__all__ = ["CRDLoss", "crd_loss", "crd_normalizers", "crd_update_memory"]
