"""cosine_embedding_loss and mse_embedding_loss against loops and known values."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import CosineEmbeddingLoss, MSEEmbeddingLoss, cosine_embedding_loss, mse_embedding_loss


def unit(row: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in row))
    return [v / norm for v in row]


def test_cosine_embedding_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    pairs = list(zip(student.tolist(), teacher.tolist()))
    expected = sum(1 - sum(a * b for a, b in zip(unit(s), unit(t))) for s, t in pairs) / len(pairs)
    torch.testing.assert_close(cosine_embedding_loss(student, teacher), torch.tensor(expected, dtype=torch.float64))


def test_cosine_embedding_of_identical_embeddings_is_zero() -> None:
    embedding = torch.randn(4, 5)
    torch.testing.assert_close(cosine_embedding_loss(embedding, 3 * embedding), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_cosine_embedding_of_opposite_embeddings_is_two() -> None:
    embedding = torch.randn(4, 5)
    torch.testing.assert_close(cosine_embedding_loss(embedding, -embedding), torch.tensor(2.0))


def test_mse_embedding_normalised_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    squares = [(a - b) ** 2 for s, t in zip(student.tolist(), teacher.tolist()) for a, b in zip(unit(s), unit(t))]
    expected = sum(squares) / len(squares)
    torch.testing.assert_close(mse_embedding_loss(student, teacher), torch.tensor(expected, dtype=torch.float64))


def test_mse_embedding_normalised_equals_two_cosine_loss_over_dim() -> None:
    student, teacher = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(mse_embedding_loss(student, teacher), 2 * cosine_embedding_loss(student, teacher) / 6)


def test_mse_embedding_without_normalisation_is_plain_mse() -> None:
    student, teacher = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    torch.testing.assert_close(mse_embedding_loss(student, teacher, normalize=False), torch.tensor((9.0 + 16.0) / 2))


def test_embedding_losses_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5)
    (cosine_embedding_loss(student, teacher) + mse_embedding_loss(student, teacher)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_embedding_losses_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(
        ValueError, match=r"cosine_embedding_loss: student_embedding \(4, 5\) and teacher_embedding \(4, 6\)"
    ):
        cosine_embedding_loss(torch.randn(4, 5), torch.randn(4, 6))
    with pytest.raises(
        ValueError, match=r"mse_embedding_loss: student_embedding \(4, 5\) and teacher_embedding \(3, 5\)"
    ):
        mse_embedding_loss(torch.randn(4, 5), torch.randn(3, 5))


def test_embedding_losses_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 8), torch.randn(6, 8)
    for loss in (cosine_embedding_loss, mse_embedding_loss):
        result = loss(student.bfloat16(), teacher.bfloat16())
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, loss(student.bfloat16().float(), teacher.bfloat16().float()))
        torch.testing.assert_close(result, loss(student, teacher), rtol=0.05, atol=1e-2)


def test_embedding_modules_match_functions() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(CosineEmbeddingLoss()(student, teacher), cosine_embedding_loss(student, teacher))
    torch.testing.assert_close(
        MSEEmbeddingLoss(normalize=False)(student, teacher), mse_embedding_loss(student, teacher, normalize=False)
    )
