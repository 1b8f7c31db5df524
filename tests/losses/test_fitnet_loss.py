"""fitnet_loss / FitNetLoss against an element loop and a known value."""

from __future__ import annotations

import pytest
import torch

from kdlab.losses import FitNetLoss, fitnet_loss


def test_fitnet_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(4, 3, 2, 2, dtype=torch.float64), torch.randn(4, 3, 2, 2, dtype=torch.float64)
    pairs = list(zip(student.flatten().tolist(), teacher.flatten().tolist()))
    expected = sum((a - b) ** 2 for a, b in pairs) / len(pairs)
    torch.testing.assert_close(fitnet_loss(student, teacher), torch.tensor(expected, dtype=torch.float64))


def test_fitnet_known_value_is_mean_not_sum() -> None:
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    teacher = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    torch.testing.assert_close(fitnet_loss(student, teacher), torch.tensor((4.0 + 16.0) / 4))


def test_fitnet_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    fitnet_loss(student, torch.randn(2, 3, 4, 4)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_fitnet_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"fitnet_loss: student_hint \(2, 3, 4, 4\) and teacher_hint \(2, 6, 4, 4\)"):
        fitnet_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 6, 4, 4))


def test_fitnet_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    result = fitnet_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, fitnet_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, fitnet_loss(student, teacher), rtol=0.05, atol=1e-2)


def test_fitnet_module_matches_function() -> None:
    student, teacher = torch.randn(2, 5), torch.randn(2, 5)
    torch.testing.assert_close(FitNetLoss()(student, teacher), fitnet_loss(student, teacher))
