r"""Self-supervised knowledge distillation (SSKD).

Xu, Liu, Li & Loy, "Knowledge Distillation Meets Self-Supervision", ECCV 2020.

Every image comes in V views (V = 4: view 0 is the normal image, views 1..3 its
rotations by 90/180/270 degrees). Logits are shaped (B, V, K) and the outputs of
the self-supervision heads (B, V, d). Rotated rows are flattened image-major:
row ``i * (V-1) + (v-1)`` is image i, view v, and carries image i's label.

Terms (KL is :math:`\mathrm{KL}(\mathrm{softmax}(t/\tau) \| \mathrm{softmax}(s/\tau))` per row):

* ``ce``: cross-entropy of the student's view-0 logits against the labels.
* ``kd``: KL on view 0 at temperature T, batch mean, times :math:`T^2`.
* ``tf``: the same KL on the B(V-1) rotated rows, averaged over the *selected*
  rows, times :math:`T^2`.
* ``ss``: for each network, the ((V-1)B, B) cosine-similarity matrix between
  every rotated head output and the B normal-view head outputs (the right
  column of a row from image i is i); KL between teacher and student rows at
  temperature :math:`\tau_{ss}`, averaged over the selected rows, times
  :math:`\tau_{ss}^2`.

.. math::

    \mathcal{L} = \lambda_{ce}\,\mathrm{ce} + \lambda_{kd}\,\mathrm{kd}
        + \lambda_{tf}\,\mathrm{tf} + \lambda_{ss}\,\mathrm{ss}

Selection (the paper's error-level ranking). A row's rank is the number of
columns whose *teacher* score (logit for ``tf``, similarity for ``ss``) is
strictly greater than the score of its true column; rank 0 means the teacher
is right (a tie at the top counts as right). All rows of rank 0 are kept, plus
the ``int(ratio * number_of_wrong_rows)`` wrong rows of smallest rank; equal
ranks are taken in row order (stable sort, lower row index first). If no row
is kept the term is 0. The official code ranks by argsort of the teacher's
softmax, whose order among exactly tied scores is unspecified; this rule makes
it deterministic.

Weights. Defaults are the official code's: ce 0.1, kd 0.9, tf 2.7, ss 10.0,
T = 4, tau_ss = 0.5, tf_ratio 1.0, ss_ratio 0.75. The arXiv text swaps the tf
and ss weights (tf 10, ss 2.7), and the ECCV supplementary material lists
3.0 / 5.0; we follow the released code.

The teacher is trained first with a self-supervision head on the same
similarity matrix (:func:`sskd_ss_ce_loss`, no temperature); that phase belongs
to the method, these helpers only compute its loss and accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses._checks import (
    check_min_batch,
    check_ndim,
    check_non_negative,
    check_positive,
    check_same_shape,
    check_targets,
    shape_str,
    upcast,
)
from kdlab.losses.kd import softened_kl


def sskd_similarity(head_out: Tensor) -> Tensor:
    """(B, V, d) head outputs -> ((V-1)B, B) cosine similarities.

    Row ``i * (V-1) + (v-1)`` compares image i's view v with the view-0 output
    of every image (columns); its right answer is column i.
    """
    _check_views("sskd_similarity", "head_out", head_out, "(batch, views, dim)")
    (head,) = upcast(head_out)
    batch_size, num_views, dim = head.shape
    normal = F.normalize(head[:, 0], dim=1)
    rotated = F.normalize(head[:, 1:].reshape(batch_size * (num_views - 1), dim), dim=1)
    return rotated @ normal.T


def sskd_ss_ce_loss(head_out: Tensor) -> Tensor:
    """Teacher phase-1 self-supervision loss: cross-entropy of :func:`sskd_similarity` rows.

    No temperature; the target of a row from image i is column i.

    Args:
        head_out: (B, V, d) outputs of the teacher's self-supervision head.

    Returns:
        Scalar tensor.
    """
    similarity = sskd_similarity(head_out)
    return F.cross_entropy(similarity, _source_columns(head_out))


def sskd_ss_accuracy(head_out: Tensor) -> Tensor:
    """Fraction of :func:`sskd_similarity` rows whose argmax is the right column (float tensor)."""
    with torch.no_grad():
        similarity = sskd_similarity(head_out)
        return (similarity.argmax(dim=1) == _source_columns(head_out)).float().mean()


def sskd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    targets: Tensor,
    *,
    temperature: float = 4.0,
    ss_temperature: float = 0.5,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    tf_weight: float = 2.7,
    ss_weight: float = 10.0,
    tf_ratio: float = 1.0,
    ss_ratio: float = 0.75,
) -> dict[str, Tensor]:
    """SSKD student objective (see the module docstring for the terms and the row selection).

    Args:
        student_logits: (B, V, K) student logits, view 0 the normal image, V >= 2.
        teacher_logits: (B, V, K) teacher logits.
        student_embedding: (B, V, d_s) student self-supervision head outputs.
        teacher_embedding: (B, V, d_t) teacher self-supervision head outputs.
        targets: (B,) integer labels.
        temperature: T of ``kd`` and ``tf``.
        ss_temperature: tau of ``ss``.
        ce_weight, kd_weight, tf_weight, ss_weight: term weights in ``loss``.
        tf_ratio, ss_ratio: fraction of the teacher's wrong rows kept for ``tf`` / ``ss``.

    Returns:
        ``{"ce", "kd", "tf", "ss", "loss"}``, scalar tensors; ``loss`` is the weighted sum.
    """
    fn = "sskd_loss"
    _check_views(fn, "student_logits", student_logits, "(batch, views, classes)")
    check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
    _check_views(fn, "student_embedding", student_embedding, "(batch, views, dim)")
    _check_views(fn, "teacher_embedding", teacher_embedding, "(batch, views, dim)")
    for name, embedding in (("student_embedding", student_embedding), ("teacher_embedding", teacher_embedding)):
        if embedding.shape[:2] != student_logits.shape[:2]:
            raise ValueError(
                f"{fn}: {name} {shape_str(embedding)} and student_logits {shape_str(student_logits)} "
                "must have the same batch size and number of views"
            )
    batch_size, num_views, num_classes = student_logits.shape
    check_targets(fn, targets, batch_size, num_classes)
    check_positive(fn, "temperature", temperature)
    check_positive(fn, "ss_temperature", ss_temperature)
    for name, value in (
        ("ce_weight", ce_weight),
        ("kd_weight", kd_weight),
        ("tf_weight", tf_weight),
        ("ss_weight", ss_weight),
        ("tf_ratio", tf_ratio),
        ("ss_ratio", ss_ratio),
    ):
        check_non_negative(fn, name, value)

    student, teacher = upcast(student_logits, teacher_logits)
    ce = F.cross_entropy(student[:, 0], targets)
    kd = softened_kl(student[:, 0], teacher[:, 0], temperature).mean() * temperature**2

    student_rotated = student[:, 1:].reshape(-1, num_classes)
    teacher_rotated = teacher[:, 1:].reshape(-1, num_classes)
    rotated_labels = targets.repeat_interleave(num_views - 1)
    tf_rows = select_confident_rows(teacher_rotated, rotated_labels, tf_ratio)
    tf = _mean_over_rows(softened_kl(student_rotated, teacher_rotated, temperature), tf_rows) * temperature**2

    student_similarity = sskd_similarity(student_embedding)
    teacher_similarity = sskd_similarity(teacher_embedding)
    ss_rows = select_confident_rows(teacher_similarity, _source_columns(teacher_embedding), ss_ratio)
    ss_kl = softened_kl(student_similarity, teacher_similarity, ss_temperature)
    ss = _mean_over_rows(ss_kl, ss_rows) * ss_temperature**2

    loss = ce_weight * ce + kd_weight * kd + tf_weight * tf + ss_weight * ss
    return {"ce": ce, "kd": kd, "tf": tf, "ss": ss, "loss": loss}


def select_confident_rows(teacher_scores: Tensor, true_columns: Tensor, wrong_ratio: float) -> Tensor:
    """Row indices (ascending) kept by SSKD's error-level ranking.

    rank = number of columns scoring strictly above the true column; all rank-0
    rows are kept plus ``int(wrong_ratio * n_wrong)`` wrong rows of smallest
    rank, ties by lower row index.

    Args:
        teacher_scores: (N, C) teacher logits or similarities.
        true_columns: (N,) index of the right column of each row.
        wrong_ratio: fraction of wrong rows to keep, >= 0.
    """
    with torch.no_grad():
        true_scores = teacher_scores.gather(1, true_columns[:, None])
        ranks = (teacher_scores > true_scores).sum(dim=1)
        num_wrong = int((ranks > 0).sum())
        num_kept = ranks.shape[0] - num_wrong + int(wrong_ratio * num_wrong)
        order = torch.sort(ranks, stable=True).indices
        return torch.sort(order[:num_kept]).values


def _mean_over_rows(per_row: Tensor, rows: Tensor) -> Tensor:
    # A sum over an empty selection is a graph-connected 0, so backward still works.
    return per_row[rows].sum() / max(rows.numel(), 1)


def _source_columns(head_out: Tensor) -> Tensor:
    """Right column of each similarity row: image index, repeated V-1 times (image-major)."""
    batch_size, num_views = head_out.shape[:2]
    return torch.arange(batch_size, device=head_out.device).repeat_interleave(num_views - 1)


def _check_views(fn: str, name: str, tensor: Tensor, layout: str) -> None:
    check_ndim(fn, name, tensor, 3, layout)
    check_min_batch(fn, name, tensor, 1)
    if tensor.shape[1] < 2:
        raise ValueError(
            f"{fn}: {name} {shape_str(tensor)} needs at least 2 views (normal + rotated) along dimension 1"
        )


class SSKDLoss(nn.Module):
    """Module form of :func:`sskd_loss`; stores temperatures, term weights and selection ratios."""

    def __init__(
        self,
        *,
        temperature: float = 4.0,
        ss_temperature: float = 0.5,
        ce_weight: float = 0.1,
        kd_weight: float = 0.9,
        tf_weight: float = 2.7,
        ss_weight: float = 10.0,
        tf_ratio: float = 1.0,
        ss_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        check_positive("SSKDLoss", "temperature", temperature)
        check_positive("SSKDLoss", "ss_temperature", ss_temperature)
        for name, value in (
            ("ce_weight", ce_weight),
            ("kd_weight", kd_weight),
            ("tf_weight", tf_weight),
            ("ss_weight", ss_weight),
            ("tf_ratio", tf_ratio),
            ("ss_ratio", ss_ratio),
        ):
            check_non_negative("SSKDLoss", name, value)
        self.temperature = temperature
        self.ss_temperature = ss_temperature
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.tf_weight = tf_weight
        self.ss_weight = ss_weight
        self.tf_ratio = tf_ratio
        self.ss_ratio = ss_ratio

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        student_embedding: Tensor,
        teacher_embedding: Tensor,
        targets: Tensor,
    ) -> dict[str, Tensor]:
        return sskd_loss(
            student_logits,
            teacher_logits,
            student_embedding,
            teacher_embedding,
            targets,
            temperature=self.temperature,
            ss_temperature=self.ss_temperature,
            ce_weight=self.ce_weight,
            kd_weight=self.kd_weight,
            tf_weight=self.tf_weight,
            ss_weight=self.ss_weight,
            tf_ratio=self.tf_ratio,
            ss_ratio=self.ss_ratio,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, ss_temperature={self.ss_temperature}, "
            f"weights(ce={self.ce_weight}, kd={self.kd_weight}, tf={self.tf_weight}, ss={self.ss_weight}), "
            f"tf_ratio={self.tf_ratio}, ss_ratio={self.ss_ratio}"
        )


__all__ = [
    "SSKDLoss",
    "select_confident_rows",
    "sskd_loss",
    "sskd_similarity",
    "sskd_ss_accuracy",
    "sskd_ss_ce_loss",
]
