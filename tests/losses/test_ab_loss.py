"""ab_loss / ABLoss against an element-by-element loop reference (float64)."""

from __future__ import annotations

import pytest
import torch

from kdlab.losses import ABLoss, ab_loss


def naive_layer(student: torch.Tensor, teacher: torch.Tensor, margin: float) -> float:
    total = 0.0
    for s, t in zip(student.flatten().tolist(), teacher.flatten().tolist()):
        if t <= 0 and s > -margin:
            total += (s + margin) ** 2
        if t > 0 and s <= margin:
            total += (s - margin) ** 2
    return total


def naive_ab(student: list[torch.Tensor], teacher: list[torch.Tensor], margin: float) -> float:
    n = len(student)
    total = sum(2.0 ** (k - n + 1) * naive_layer(s, t, margin) for k, (s, t) in enumerate(zip(student, teacher)))
    return total / student[0].shape[0] / 1000 * 3


@pytest.mark.parametrize("margin", [1.0, 0.5, 0.0])
def test_ab_matches_the_loop_reference(margin: float):
    shapes = [(3, 4, 4), (4, 2, 2), (5, 1, 1)]
    student = [torch.randn(3, *s, dtype=torch.float64) * 2 for s in shapes]
    teacher = [torch.randn(3, *s, dtype=torch.float64) for s in shapes]
    expected = torch.tensor(naive_ab(student, teacher, margin), dtype=torch.float64)
    torch.testing.assert_close(ab_loss(student, teacher, margin=margin), expected)
    torch.testing.assert_close(ABLoss(margin)(student, teacher), expected)


def test_the_deepest_layer_weighs_one_and_each_shallower_half_as_much():
    s, t = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    zero_s, zero_t = torch.full_like(s, 5.0), torch.ones_like(t)  # on the right side of the margin: no loss
    single = ab_loss(s, t)
    torch.testing.assert_close(single, torch.tensor(naive_ab([s], [t], 1.0), dtype=torch.float64))
    torch.testing.assert_close(ab_loss([s, zero_s], [t, zero_t]), single / 2)
    torch.testing.assert_close(ab_loss([s, zero_s, zero_s], [t, zero_t, zero_t]), single / 4)


def test_neurons_beyond_the_margin_on_the_teachers_side_cost_nothing():
    teacher = torch.tensor([1.0, -1.0, 0.0, 2.0]).view(1, 4, 1, 1)
    student = torch.tensor([1.5, -1.0, -3.0, 1.0]).view(1, 4, 1, 1)
    assert float(ab_loss(student, teacher)) == 0.0
    student = student.clone().requires_grad_(True)
    ab_loss(student, -teacher).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_bad_inputs_show_what_is_wrong():
    with pytest.raises(ValueError, match=r"student_features\[0\] \(2, 3, 4, 4\) and teacher_features\[0\] "
                                         r"\(2, 5, 4, 4\) must have the same shape"):
        ab_loss([torch.randn(2, 3, 4, 4)], [torch.randn(2, 5, 4, 4)])
    with pytest.raises(ValueError, match="equal length"):
        ab_loss([torch.randn(2, 3, 4, 4)], [])
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ab_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), margin=-1.0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ABLoss(margin=-0.5)
    with pytest.raises(ValueError, match="must be 4-D"):
        ab_loss(torch.randn(2, 3), torch.randn(2, 3))


def test_half_inputs_give_a_float32_result():
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    result = ab_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, ab_loss(student.bfloat16().float(), teacher.bfloat16().float()))
