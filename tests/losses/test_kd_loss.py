"""kd_loss / KDLoss against a loop-and-math reference."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import KDLoss, kd_loss


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def naive_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> float:
    total = 0.0
    rows = list(zip(student.tolist(), teacher.tolist()))
    for student_row, teacher_row in rows:
        p_s = naive_softmax([v / temperature for v in student_row])
        p_t = naive_softmax([v / temperature for v in teacher_row])
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return total / len(rows) * temperature**2


def test_kd_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(5, 7, dtype=torch.float64) * 3, torch.randn(5, 7, dtype=torch.float64) * 3
    result = kd_loss(student, teacher, temperature=2.5)
    torch.testing.assert_close(result, torch.tensor(naive_kd(student, teacher, 2.5), dtype=torch.float64))


def test_kd_of_identical_logits_is_zero() -> None:
    logits = torch.randn(4, 10)
    torch.testing.assert_close(kd_loss(logits, logits.clone()), torch.tensor(0.0))


def test_kd_is_multiplied_by_temperature_squared() -> None:
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    # Same softened distributions at T=2 (logits x2) and T=1: only the T^2 factor differs.
    torch.testing.assert_close(kd_loss(2 * student, 2 * teacher, temperature=2.0), 4 * kd_loss(student, teacher, 1.0))


def test_kd_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    kd_loss(student, torch.randn(4, 10)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_kd_teacher_requiring_grad_gives_same_value() -> None:
    student, teacher = torch.randn(4, 10), torch.randn(4, 10)
    detached = kd_loss(student, teacher)
    attached = kd_loss(student, teacher.clone().requires_grad_(True))
    torch.testing.assert_close(attached.detach(), detached)


def test_kd_stays_finite_for_extreme_logits() -> None:
    student = torch.tensor([[1000.0, -1000.0, 0.0]])
    teacher = torch.tensor([[-1000.0, 1000.0, 0.0]])
    assert torch.isfinite(kd_loss(student, teacher, temperature=1.0))


def test_kd_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"kd_loss: student_logits \(8, 10\) and teacher_logits \(8, 100\)"):
        kd_loss(torch.randn(8, 10), torch.randn(8, 100))


def test_kd_rejects_non_2d_logits_with_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        kd_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4))


def test_kd_rejects_non_positive_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 3), temperature=0.0)


def test_kd_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    result = kd_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, kd_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, kd_loss(student, teacher), rtol=0.05, atol=0.02)


def test_kd_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(KDLoss(temperature=3.0)(student, teacher), kd_loss(student, teacher, 3.0))
