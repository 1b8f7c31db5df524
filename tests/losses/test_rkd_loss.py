"""rkd_loss / RKDLoss against loops over pairs and triplets."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import RKDLoss, rkd_loss


def huber(a: float, b: float) -> float:
    diff = abs(a - b)
    return 0.5 * diff * diff if diff < 1.0 else diff - 0.5


def distance(a: list[float], b: list[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def naive_normalised_distances(rows: list[list[float]]) -> list[list[float]]:
    n = len(rows)
    d = [[distance(rows[i], rows[j]) if i != j else 0.0 for j in range(n)] for i in range(n)]
    mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return [[v / mean for v in row] for row in d]


def naive_angle(rows: list[list[float]], i: int, j: int, k: int) -> float:
    """Cosine at anchor i between j and k; 0 when either difference vanishes."""
    u = [a - b for a, b in zip(rows[j], rows[i])]
    v = [a - b for a, b in zip(rows[k], rows[i])]
    nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
    if nu == 0 or nv == 0:
        return 0.0
    return sum(x * y for x, y in zip(u, v)) / (nu * nv)


def naive_rkd(student: torch.Tensor, teacher: torch.Tensor, distance_weight: float, angle_weight: float) -> float:
    s, t = student.tolist(), teacher.tolist()
    n = len(s)
    d_s, d_t = naive_normalised_distances(s), naive_normalised_distances(t)
    dist_term = sum(huber(d_s[i][j], d_t[i][j]) for i in range(n) for j in range(n)) / n**2
    angle_term = 0.0
    for i in range(n):
        for j in range(n):
            for k in range(n):
                angle_term += huber(naive_angle(s, i, j, k), naive_angle(t, i, j, k))
    angle_term /= n**3
    return distance_weight * dist_term + angle_weight * angle_term


def test_rkd_matches_naive_loop_reference() -> None:
    student = torch.randn(5, 4, dtype=torch.float64)
    teacher = torch.randn(5, 7, dtype=torch.float64) * 3
    expected = naive_rkd(student, teacher, 25.0, 50.0)
    torch.testing.assert_close(rkd_loss(student, teacher), torch.tensor(expected, dtype=torch.float64))


def test_rkd_distance_term_alone_matches_reference_with_huber_linear_part() -> None:
    # A large spread in one embedding pushes some normalised distance gaps past delta = 1.
    student = torch.randn(6, 3, dtype=torch.float64)
    student[0] *= 40
    teacher = torch.randn(6, 3, dtype=torch.float64)
    expected = naive_rkd(student, teacher, 1.0, 0.0)
    torch.testing.assert_close(rkd_loss(student, teacher, 1.0, 0.0), torch.tensor(expected, dtype=torch.float64))


def test_rkd_angle_term_alone_matches_reference() -> None:
    student, teacher = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    expected = naive_rkd(student, teacher, 0.0, 1.0)
    torch.testing.assert_close(rkd_loss(student, teacher, 0.0, 1.0), torch.tensor(expected, dtype=torch.float64))


def test_rkd_is_invariant_to_scaling_and_translating_the_student() -> None:
    student, teacher = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    moved = 3.0 * student + torch.randn(1, 4, dtype=torch.float64)
    torch.testing.assert_close(rkd_loss(moved, teacher), rkd_loss(student, teacher))


def test_rkd_of_identical_embeddings_is_zero() -> None:
    embedding = torch.randn(5, 4)
    torch.testing.assert_close(rkd_loss(embedding, embedding.clone()), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_rkd_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(5, 4, requires_grad=True)
    rkd_loss(student, torch.randn(5, 8)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_rkd_gradient_is_finite_with_duplicate_samples() -> None:
    student = torch.randn(5, 4)
    student[3] = student[1]
    student.requires_grad_(True)
    rkd_loss(student, torch.randn(5, 8)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_rkd_needs_two_samples() -> None:
    with pytest.raises(ValueError, match=r"student_embedding \(1, 4\) needs at least 2 sample"):
        rkd_loss(torch.randn(1, 4), torch.randn(1, 4))


def test_rkd_batch_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"rkd_loss: student_embedding \(5, 4\) and teacher_embedding \(4, 4\)"):
        rkd_loss(torch.randn(5, 4), torch.randn(4, 4))


def test_rkd_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 8), torch.randn(6, 12)
    result = rkd_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, rkd_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, rkd_loss(student, teacher), rtol=0.05, atol=0.05)


def test_rkd_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 3)
    torch.testing.assert_close(RKDLoss(2.0, 3.0)(student, teacher), rkd_loss(student, teacher, 2.0, 3.0))
