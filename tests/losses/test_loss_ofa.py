"""ofa_loss / OFALoss against a float64 loop-and-math reference of the official ``ofa_loss``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import OFALoss, kd_loss, ofa_loss


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def naive_ofa(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, eps: float, t: float) -> float:
    """Mean over rows of sum_k -((p_t + m)^eps - m) * log p_s, m the one-hot label (the official code)."""
    total = 0.0
    for s_row, t_row, label in zip(student.tolist(), teacher.tolist(), targets.tolist()):
        p_s = naive_softmax([v / t for v in s_row])
        p_t = naive_softmax([v / t for v in t_row])
        for k, (ps, pt) in enumerate(zip(p_s, p_t)):
            m = 1.0 if k == label else 0.0
            total -= ((pt + m) ** eps - m) * math.log(ps)
    return total / student.shape[0]


@pytest.mark.parametrize("eps, temperature", [(1.0, 1.0), (1.5, 1.0), (1.2, 2.0), (0.8, 4.0)])
def test_ofa_matches_naive_loop_reference(eps: float, temperature: float) -> None:
    student, teacher = torch.randn(6, 8, dtype=torch.float64) * 2, torch.randn(6, 8, dtype=torch.float64) * 2
    targets = torch.tensor([0, 7, 3, 3, 1, 5])
    result = ofa_loss(student, teacher, targets, eps=eps, temperature=temperature)
    expected = naive_ofa(student, teacher, targets, eps, temperature)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_eps_one_is_the_cross_entropy_to_the_teacher_probabilities() -> None:
    """(p_t + m)^1 - m = p_t: KD's KL (without T^2) plus the teacher's entropy, whatever the labels."""
    student, teacher = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    p_t = F.softmax(teacher, dim=1)
    entropy = -(p_t * p_t.log()).sum(1).mean()
    for targets in (torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 5, 5, 5, 5])):
        expected = kd_loss(student, teacher, 1.0) + entropy
        torch.testing.assert_close(ofa_loss(student, teacher, targets, eps=1.0), expected)


def test_eps_above_one_enlarges_the_target_weight() -> None:
    """For a confident teacher the target class weighs (1 + p)^eps - 1 > p when eps > 1."""
    teacher = torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0])
    student = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    ofa_loss(student, teacher, target, eps=1.0).backward()
    plain = student.grad.clone()
    student.grad = None
    ofa_loss(student, teacher, target, eps=1.5).backward()
    assert student.grad[0, 0] < plain[0, 0] < 0  # a stronger pull towards the target class


def test_extreme_logits_stay_finite() -> None:
    student = torch.tensor([[1000.0, -1000.0, 0.0]])
    teacher = torch.tensor([[-1000.0, 1000.0, 0.0]])
    assert torch.isfinite(ofa_loss(student, teacher, torch.tensor([1]), eps=1.5))


def test_gradient_reaches_the_student_only_through_its_logits() -> None:
    student = torch.randn(4, 5, requires_grad=True)
    ofa_loss(student, torch.randn(4, 5), torch.tensor([0, 1, 2, 3]), eps=1.5).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_bfloat16_inputs_give_a_float32_result() -> None:
    student, teacher, targets = torch.randn(4, 6), torch.randn(4, 6), torch.tensor([0, 1, 2, 5])
    result = ofa_loss(student.bfloat16(), teacher.bfloat16(), targets, eps=1.5)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, ofa_loss(student, teacher, targets, eps=1.5), rtol=0.05, atol=0.02)


def test_module_matches_function() -> None:
    student, teacher, targets = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    module = OFALoss(eps=1.5, temperature=2.0)
    torch.testing.assert_close(module(student, teacher, targets), ofa_loss(student, teacher, targets, 1.5, 2.0))
    assert "eps=1.5" in repr(module)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ofa_loss(torch.randn(4, 5), torch.randn(4, 6), torch.zeros(4, dtype=torch.long)),
         r"student_logits \(4, 5\) and teacher_logits \(4, 6\)"),
        (lambda: ofa_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 3])), r"\[0, 3\)"),
        (lambda: ofa_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0.0, 1.0])), "integer class indices"),
        (lambda: ofa_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), eps=0.0), "eps"),
        (lambda: ofa_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), temperature=-1.0), "temperature"),
        (lambda: ofa_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.tensor([0, 1])), r"\(2, 3, 4\)"),
    ],
)
def test_bad_inputs_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
