"""cc_loss / CCLoss against a loop reference of RepDistiller's Correlation (float64)."""

from __future__ import annotations

import pytest
import torch

from kdlab.losses import CCLoss, cc_loss


def naive_cc(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """(1 / (B - 1)) * sum_i sum_k |s_ik - t_ik| * |s_(i+1)k - t_(i+1)k|."""
    s, t = student.tolist(), teacher.tolist()
    batch, dim = len(s), len(s[0])
    total = 0.0
    for i in range(batch - 1):
        for k in range(dim):
            total += abs(s[i][k] - t[i][k]) * abs(s[i + 1][k] - t[i + 1][k])
    return total / (batch - 1)


def test_cc_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(6, 7, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    torch.testing.assert_close(cc_loss(student, teacher), torch.tensor(naive_cc(student, teacher), dtype=torch.float64))


def test_cc_with_two_samples_is_one_inner_product() -> None:
    student = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.0, 1.0], [2.0, 1.0]], dtype=torch.float64)
    # d_0 = (1, 3), d_1 = (1.5, 2): 1.5 + 6
    torch.testing.assert_close(cc_loss(student, teacher), torch.tensor(7.5, dtype=torch.float64))


def test_cc_depends_on_the_order_of_the_batch() -> None:
    student, teacher = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    order = torch.tensor([2, 0, 4, 1, 3])
    torch.testing.assert_close(
        cc_loss(student[order], teacher[order]),
        torch.tensor(naive_cc(student[order], teacher[order]), dtype=torch.float64),
    )


def test_cc_of_identical_embeddings_is_zero() -> None:
    embedding = torch.randn(4, 3)
    torch.testing.assert_close(cc_loss(embedding, embedding.clone()), torch.tensor(0.0))


def test_cc_gradient_reaches_both_sides() -> None:
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)  # a trainable teacher projection
    cc_loss(student, teacher).backward()
    for grad in (student.grad, teacher.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_cc_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"cc_loss: student_embedding \(4, 3\) and teacher_embedding \(4, 5\)"):
        cc_loss(torch.randn(4, 3), torch.randn(4, 5))


def test_cc_needs_two_samples_and_2d_inputs() -> None:
    with pytest.raises(ValueError, match=r"student_embedding \(1, 3\) needs at least 2 sample"):
        cc_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"teacher_embedding must be 2-D .* got shape \(4, 3, 2\)"):
        cc_loss(torch.randn(4, 3), torch.randn(4, 3, 2))


def test_cc_half_inputs_give_float32_result() -> None:
    student, teacher = torch.randn(6, 8), torch.randn(6, 8)
    for dtype in (torch.float16, torch.bfloat16):
        result = cc_loss(student.to(dtype), teacher.to(dtype))
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, cc_loss(student.to(dtype).float(), teacher.to(dtype).float()))
        torch.testing.assert_close(result, cc_loss(student, teacher), rtol=0.05, atol=1e-2)


def test_cc_module_matches_function() -> None:
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(CCLoss()(student, teacher), cc_loss(student, teacher))
