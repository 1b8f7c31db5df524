"""ckd_loss / CKDLoss against loop references and a handmade case."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import CKDLoss, ckd_loss


def unit(row: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in row))
    return [v / norm for v in row]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def cross_entropy_of_row(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def naive_ckd(student: torch.Tensor, teacher: torch.Tensor, temperature: float, negatives: str) -> float:
    s = [unit(r) for r in student.tolist()]
    t = [unit(r) for r in teacher.tolist()]
    batch = len(s)
    total = 0.0
    for i in range(batch):
        row = []
        for j in range(batch):
            if j == i:
                row.append(dot(t[i], s[i]) / temperature)
            elif negatives == "teacher_student":
                row.append(dot(t[i], s[j]) / temperature)
            else:
                row.append(dot(s[i], s[j]) / temperature)
        total += cross_entropy_of_row(row, i)
    return total / batch


def naive_intra(student: torch.Tensor, teacher: torch.Tensor) -> float:
    pairs = list(zip(student.tolist(), teacher.tolist()))
    return sum(1.0 - dot(unit(s), unit(t)) for s, t in pairs) / len(pairs)


@pytest.mark.parametrize("negatives", ["teacher_student", "student_student"])
def test_ckd_matches_naive_loop_reference(negatives: str) -> None:
    student, teacher = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    result = ckd_loss(student, teacher, temperature=0.3, negatives=negatives)
    expected = naive_ckd(student, teacher, 0.3, negatives)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_ckd_handmade_two_by_two_case() -> None:
    # Normalised: t0 = (1, 0), t1 = (1, 1)/sqrt2; s0 = (1, 0), s1 = (0, 1).
    # Row 0 scores (1, 0)/T; row 1 scores (1/sqrt2, 1/sqrt2)/T -> row 1 loss is log 2 for any T.
    teacher = torch.tensor([[2.0, 0.0], [3.0, 3.0]], dtype=torch.float64)
    student = torch.tensor([[5.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    temperature = 0.5
    row0 = math.log(1.0 + math.exp(-1.0 / temperature))
    expected = (row0 + math.log(2.0)) / 2
    torch.testing.assert_close(ckd_loss(student, teacher, temperature), torch.tensor(expected, dtype=torch.float64))


def test_ckd_intra_weight_adds_mean_one_minus_cosine() -> None:
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    result = ckd_loss(student, teacher, temperature=1.0, intra_weight=0.7)
    expected = naive_ckd(student, teacher, 1.0, "teacher_student") + 0.7 * naive_intra(student, teacher)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_ckd_is_invariant_to_positive_rescaling_of_logits() -> None:
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(ckd_loss(7.0 * student, 0.2 * teacher), ckd_loss(student, teacher))


def test_ckd_single_sample_has_no_negatives_and_is_zero() -> None:
    torch.testing.assert_close(ckd_loss(torch.randn(1, 5), torch.randn(1, 5)), torch.tensor(0.0))


def test_ckd_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    ckd_loss(student, torch.randn(4, 10), intra_weight=1.0).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_ckd_rejects_unknown_negatives_kind() -> None:
    with pytest.raises(ValueError, match="negatives"):
        ckd_loss(torch.randn(3, 4), torch.randn(3, 4), negatives="bank")  # type: ignore[arg-type]


def test_ckd_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"ckd_loss: student_logits \(4, 10\) and teacher_logits \(5, 10\)"):
        ckd_loss(torch.randn(4, 10), torch.randn(5, 10))


def test_ckd_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    result = ckd_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, ckd_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, ckd_loss(student, teacher), rtol=0.05, atol=0.02)


def test_ckd_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    module = CKDLoss(temperature=0.5, negatives="student_student", intra_weight=0.3)
    expected = ckd_loss(student, teacher, 0.5, "student_student", 0.3)
    torch.testing.assert_close(module(student, teacher), expected)
