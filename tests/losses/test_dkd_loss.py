"""dkd_loss / DKDLoss against a loop reference and the paper's decomposition of KD."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import DKDLoss, dkd_loss, kd_loss


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def naive_dkd(student, teacher, targets, alpha: float, beta: float, temperature: float) -> float:
    total = 0.0
    rows = list(zip(student.tolist(), teacher.tolist(), targets.tolist()))
    for s_row, t_row, y in rows:
        p_s = naive_softmax([v / temperature for v in s_row])
        p_t = naive_softmax([v / temperature for v in t_row])
        tckd = kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        q_s = naive_softmax([v / temperature for k, v in enumerate(s_row) if k != y])
        q_t = naive_softmax([v / temperature for k, v in enumerate(t_row) if k != y])
        total += alpha * tckd + beta * kl(q_t, q_s)
    return total / len(rows) * temperature**2


def test_dkd_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(6, 5, dtype=torch.float64) * 2, torch.randn(6, 5, dtype=torch.float64) * 2
    targets = torch.randint(0, 5, (6,))
    result = dkd_loss(student, teacher, targets, alpha=1.5, beta=3.0, temperature=2.0)
    expected = naive_dkd(student, teacher, targets, 1.5, 3.0, 2.0)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_dkd_decomposes_kd_as_tckd_plus_weighted_nckd() -> None:
    # Paper, eq. (4): KD = TCKD + (1 - p^t_target) * NCKD, per sample.
    student, teacher = torch.randn(1, 6, dtype=torch.float64), torch.randn(1, 6, dtype=torch.float64)
    target = torch.tensor([2])
    temperature = 1.7
    tckd = dkd_loss(student, teacher, target, alpha=1.0, beta=0.0, temperature=temperature)
    nckd = dkd_loss(student, teacher, target, alpha=0.0, beta=1.0, temperature=temperature)
    teacher_target_prob = torch.softmax(teacher / temperature, dim=1)[0, 2]
    expected = kd_loss(student, teacher, temperature)
    torch.testing.assert_close(tckd + (1 - teacher_target_prob) * nckd, expected)


def test_dkd_of_identical_logits_is_zero() -> None:
    logits = torch.randn(4, 7)
    result = dkd_loss(logits, logits.clone(), torch.tensor([0, 1, 2, 6]))
    torch.testing.assert_close(result, torch.tensor(0.0))


def test_dkd_stays_finite_for_very_confident_logits() -> None:
    student = torch.tensor([[500.0, -500.0, 0.0], [0.0, 800.0, -800.0]])
    teacher = torch.tensor([[900.0, 0.0, -900.0], [-300.0, 300.0, 0.0]])
    targets = torch.tensor([0, 1])
    student.requires_grad_(True)
    loss = dkd_loss(student, teacher, targets, temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and student.grad is not None and torch.isfinite(student.grad).all()


def test_dkd_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    dkd_loss(student, torch.randn(4, 10), torch.randint(0, 10, (4,))).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_dkd_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"dkd_loss: student_logits \(4, 10\) and teacher_logits \(4, 9\)"):
        dkd_loss(torch.randn(4, 10), torch.randn(4, 9), torch.zeros(4, dtype=torch.long))


def test_dkd_targets_out_of_range_error_shows_the_range() -> None:
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 10\), got values in \[0, 10\]"):
        dkd_loss(torch.randn(2, 10), torch.randn(2, 10), torch.tensor([0, 10]))


def test_dkd_targets_of_wrong_shape_error_shows_the_shape() -> None:
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\), got \(4, 1\)"):
        dkd_loss(torch.randn(4, 10), torch.randn(4, 10), torch.zeros(4, 1, dtype=torch.long))


def test_dkd_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher, targets = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    result = dkd_loss(student.bfloat16(), teacher.bfloat16(), targets)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, dkd_loss(student.bfloat16().float(), teacher.bfloat16().float(), targets))
    torch.testing.assert_close(result, dkd_loss(student, teacher, targets), rtol=0.05, atol=0.05)


def test_dkd_module_matches_function() -> None:
    student, teacher, targets = torch.randn(4, 5), torch.randn(4, 5), torch.randint(0, 5, (4,))
    module = DKDLoss(alpha=0.5, beta=2.0, temperature=3.0)
    torch.testing.assert_close(module(student, teacher, targets), dkd_loss(student, teacher, targets, 0.5, 2.0, 3.0))
