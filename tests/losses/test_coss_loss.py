"""coss_loss / CoSSLoss against loops over samples and dimensions."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import CoSSLoss, cosine_embedding_loss, coss_loss


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def naive_coss(student: torch.Tensor, teacher: torch.Tensor, space_weight: float) -> float:
    s, t = student.tolist(), teacher.tolist()
    batch, dim = len(s), len(s[0])
    sample_term = sum(1 - cosine(s[i], t[i]) for i in range(batch)) / batch
    columns_s = [[s[i][d] for i in range(batch)] for d in range(dim)]
    columns_t = [[t[i][d] for i in range(batch)] for d in range(dim)]
    space_term = sum(1 - cosine(columns_s[d], columns_t[d]) for d in range(dim)) / dim
    return sample_term + space_weight * space_term


def test_coss_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    expected = naive_coss(student, teacher, 0.5)
    torch.testing.assert_close(
        coss_loss(student, teacher, space_weight=0.5), torch.tensor(expected, dtype=torch.float64)
    )


def test_coss_space_term_does_not_centre_columns() -> None:
    # Adding a constant to every entry changes the uncentred column cosines.
    student, teacher = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    shifted = student + 2.0
    expected = naive_coss(shifted, teacher, 1.0)
    torch.testing.assert_close(coss_loss(shifted, teacher), torch.tensor(expected, dtype=torch.float64))


def test_coss_of_identical_embeddings_is_zero() -> None:
    embedding = torch.randn(6, 4)
    torch.testing.assert_close(coss_loss(embedding, embedding.clone()), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_coss_without_space_term_is_the_cosine_embedding_loss() -> None:
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(coss_loss(student, teacher, space_weight=0.0), cosine_embedding_loss(student, teacher))


def test_coss_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(5, 4, requires_grad=True)
    coss_loss(student, torch.randn(5, 4)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_coss_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"coss_loss: student_embedding \(5, 4\) and teacher_embedding \(5, 8\)"):
        coss_loss(torch.randn(5, 4), torch.randn(5, 8))


def test_coss_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 8), torch.randn(6, 8)
    result = coss_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, coss_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, coss_loss(student, teacher), rtol=0.05, atol=1e-2)


def test_coss_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(CoSSLoss(space_weight=2.0)(student, teacher), coss_loss(student, teacher, 2.0))
