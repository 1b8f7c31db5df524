"""nkd_loss / NKDLoss against a loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import NKDLoss, nkd_loss


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def naive_nkd(student, teacher, target, temperature: float, gamma: float) -> float:
    target_total, non_target_total = 0.0, 0.0
    rows = list(zip(student.tolist(), teacher.tolist(), target.tolist()))
    for s_row, t_row, y in rows:
        s, t = naive_softmax(s_row), naive_softmax(t_row)
        target_total += -t[y] * math.log(s[y])
        s_hat = naive_softmax([v / temperature for k, v in enumerate(s_row) if k != y])
        t_hat = naive_softmax([v / temperature for k, v in enumerate(t_row) if k != y])
        non_target_total += -sum(a * math.log(b) for a, b in zip(t_hat, s_hat))
    return target_total / len(rows) + gamma * temperature**2 * non_target_total / len(rows)


@pytest.mark.parametrize(("temperature", "gamma"), [(1.0, 1.5), (3.0, 3.5), (0.5, 0.0)])
def test_nkd_matches_naive_loop_reference(temperature: float, gamma: float) -> None:
    student, teacher = torch.randn(6, 7, dtype=torch.float64) * 2, torch.randn(6, 7, dtype=torch.float64) * 2
    target = torch.randint(0, 7, (6,))
    result = nkd_loss(student, teacher, target, temperature=temperature, gamma=gamma)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, torch.tensor(naive_nkd(student, teacher, target, temperature, gamma),
                                                    dtype=torch.float64))


def test_nkd_defaults_are_the_official_code_defaults() -> None:
    student, teacher = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    target = torch.tensor([4, 0, 2])
    expected = naive_nkd(student, teacher, target, 1.0, 1.5)
    torch.testing.assert_close(nkd_loss(student, teacher, target), torch.tensor(expected, dtype=torch.float64))


def test_nkd_non_target_part_ignores_the_target_logit() -> None:
    # the non-target softmax is over the K - 1 other classes only (the corrected official mask)
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    target = torch.tensor([0, 5, 2, 2])
    changed = teacher.clone()
    changed[torch.arange(4), target] += 7.0

    def non_target(t):  # gamma T^2 times the non-target part: the loss at gamma 1 minus the loss at gamma 0
        return nkd_loss(student, t, target, temperature=2.0, gamma=1.0) - nkd_loss(student, t, target, 2.0, 0.0)

    torch.testing.assert_close(non_target(changed), non_target(teacher))


def test_nkd_gradient_reaches_student_and_is_finite_for_confident_logits() -> None:
    student = torch.tensor([[500.0, -500.0, 0.0], [0.0, 800.0, -800.0]], requires_grad=True)
    teacher = torch.tensor([[900.0, 0.0, -900.0], [-300.0, 300.0, 0.0]])
    loss = nkd_loss(student, teacher, torch.tensor([0, 1]), temperature=2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_nkd_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"nkd_loss: student_logits \(4, 10\) and teacher_logits \(4, 9\)"):
        nkd_loss(torch.randn(4, 10), torch.randn(4, 9), torch.zeros(4, dtype=torch.long))


def test_nkd_target_errors_show_shape_and_range() -> None:
    with pytest.raises(ValueError, match=r"nkd_loss: target must have shape \(4,\), got \(4, 1\)"):
        nkd_loss(torch.randn(4, 10), torch.randn(4, 10), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 10\), got values in \[0, 10\]"):
        nkd_loss(torch.randn(2, 10), torch.randn(2, 10), torch.tensor([0, 10]))


def test_nkd_needs_two_classes() -> None:
    with pytest.raises(ValueError, match=r"nkd_loss: needs at least 2 classes, student_logits has shape \(3, 1\)"):
        nkd_loss(torch.randn(3, 1), torch.randn(3, 1), torch.zeros(3, dtype=torch.long))


def test_nkd_rejects_bad_hyper_parameters() -> None:
    args = (torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nkd_loss(*args, temperature=0.0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        nkd_loss(*args, gamma=-1.0)


def test_nkd_half_and_bfloat16_inputs_give_float32_result() -> None:
    student, teacher, target = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    for dtype in (torch.float16, torch.bfloat16):
        result = nkd_loss(student.to(dtype), teacher.to(dtype), target)
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, nkd_loss(student.to(dtype).float(), teacher.to(dtype).float(), target))


def test_nkd_module_matches_function() -> None:
    student, teacher, target = torch.randn(4, 5), torch.randn(4, 5), torch.randint(0, 5, (4,))
    module = NKDLoss(temperature=3.0, gamma=3.5)
    torch.testing.assert_close(module(student, teacher, target), nkd_loss(student, teacher, target, 3.0, 3.5))
    assert "gamma=3.5" in repr(module)
