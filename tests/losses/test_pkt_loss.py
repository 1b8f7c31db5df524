"""pkt_loss / PKTLoss against a loop reference over sample pairs."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import PKTLoss, pkt_loss


def naive_conditional(rows: list[list[float]]) -> list[list[float]]:
    units = []
    for row in rows:
        norm = math.sqrt(sum(v * v for v in row))
        units.append([v / norm for v in row])
    kernel = [[(sum(a * b for a, b in zip(u, v)) + 1.0) / 2.0 for v in units] for u in units]
    return [[k / sum(row) for k in row] for row in kernel]


def naive_pkt(student: torch.Tensor, teacher: torch.Tensor, eps: float) -> float:
    p_s, p_t = naive_conditional(student.tolist()), naive_conditional(teacher.tolist())
    n = len(p_s)
    total = sum(p_t[i][j] * math.log((p_t[i][j] + eps) / (p_s[i][j] + eps)) for i in range(n) for j in range(n))
    return total / n**2


def test_pkt_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    expected = naive_pkt(student, teacher, 1e-7)
    torch.testing.assert_close(pkt_loss(student, teacher), torch.tensor(expected, dtype=torch.float64))


def test_pkt_with_large_eps_matches_reference() -> None:
    student, teacher = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    expected = naive_pkt(student, teacher, 0.1)
    torch.testing.assert_close(pkt_loss(student, teacher, eps=0.1), torch.tensor(expected, dtype=torch.float64))


def test_pkt_of_identical_embeddings_is_zero() -> None:
    embedding = torch.randn(5, 4)
    torch.testing.assert_close(pkt_loss(embedding, embedding.clone()), torch.tensor(0.0))


def test_pkt_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(5, 4, requires_grad=True)
    pkt_loss(student, torch.randn(5, 8)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_pkt_batch_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"pkt_loss: student_embedding \(5, 4\) and teacher_embedding \(6, 4\)"):
        pkt_loss(torch.randn(5, 4), torch.randn(6, 4))


def test_pkt_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 8), torch.randn(6, 12)
    result = pkt_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, pkt_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, pkt_loss(student, teacher), rtol=0.05, atol=1e-3)


def test_pkt_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 3)
    torch.testing.assert_close(PKTLoss(eps=1e-3)(student, teacher), pkt_loss(student, teacher, eps=1e-3))
