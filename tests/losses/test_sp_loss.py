"""sp_loss / SPLoss against a loop reference over sample pairs."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import SPLoss, sp_loss


def naive_row_normalised_gram(feature: torch.Tensor) -> list[list[float]]:
    rows = feature.reshape(feature.shape[0], -1).tolist()
    gram = [[sum(a * b for a, b in zip(ri, rj)) for rj in rows] for ri in rows]
    normalised = []
    for row in gram:
        norm = math.sqrt(sum(v * v for v in row))
        normalised.append([v / norm for v in row])
    return normalised


def naive_sp(student: torch.Tensor, teacher: torch.Tensor) -> float:
    g_s, g_t = naive_row_normalised_gram(student), naive_row_normalised_gram(teacher)
    batch = len(g_s)
    return sum((g_t[i][j] - g_s[i][j]) ** 2 for i in range(batch) for j in range(batch)) / batch**2


def test_sp_matches_naive_loop_reference_for_different_trailing_shapes() -> None:
    student = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    teacher = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(sp_loss(student, teacher), torch.tensor(naive_sp(student, teacher), dtype=torch.float64))


def test_sp_of_identical_features_is_zero() -> None:
    feature = torch.randn(4, 6)
    torch.testing.assert_close(sp_loss(feature, feature.clone()), torch.tensor(0.0))


def test_sp_is_invariant_to_feature_scale() -> None:
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64)
    torch.testing.assert_close(sp_loss(3.0 * student, teacher), sp_loss(student, teacher))


def test_sp_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 3, 2, 2, requires_grad=True)
    sp_loss(student, torch.randn(4, 8)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_sp_batch_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"sp_loss: student_feature \(4, 6\) and teacher_feature \(3, 6\)"):
        sp_loss(torch.randn(4, 6), torch.randn(3, 6))


def test_sp_rejects_one_dimensional_features_with_shape() -> None:
    with pytest.raises(ValueError, match=r"student_feature .* got shape \(4,\)"):
        sp_loss(torch.randn(4), torch.randn(4, 2))


def test_sp_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 10), torch.randn(6, 12)
    result = sp_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, sp_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, sp_loss(student, teacher), rtol=0.05, atol=1e-3)


def test_sp_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 3)
    torch.testing.assert_close(SPLoss()(student, teacher), sp_loss(student, teacher))
