"""ft_loss / FTLoss against a loop reference over samples and positions (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import FTLoss, ft_loss


def naive_factor(sample: list, out_h: int, out_w: int, p1: int) -> list[float]:
    channels, height, width = len(sample), len(sample[0]), len(sample[0][0])
    bh, bw = height // out_h, width // out_w
    pooled = [
        [[sum(grid[i * bh + a][j * bw + b] for a in range(bh) for b in range(bw)) / (bh * bw) for j in range(out_w)]
         for i in range(out_h)]
        for grid in sample
    ]
    flat = [sum(pooled[c][i][j] ** p1 for c in range(channels)) / channels for i in range(out_h) for j in range(out_w)]
    norm = math.sqrt(sum(v * v for v in flat))
    return [v / norm for v in flat]


def naive_ft(student: torch.Tensor, teacher: torch.Tensor, p1: int, p2: int) -> float:
    out_h, out_w = min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3])
    values = []
    for s, t in zip(student.tolist(), teacher.tolist()):
        fs, ft = naive_factor(s, out_h, out_w, p1), naive_factor(t, out_h, out_w, p1)
        values.extend(abs(a - b) ** p2 for a, b in zip(fs, ft))
    return sum(values) / len(values)


@pytest.mark.parametrize("p1, p2", [(2, 1), (2, 2), (1, 1), (3, 2)])
def test_ft_matches_the_loop_reference(p1: int, p2: int):
    student = torch.randn(3, 4, 4, 6, dtype=torch.float64)
    teacher = torch.randn(3, 6, 4, 6, dtype=torch.float64)
    expected = torch.tensor(naive_ft(student, teacher, p1, p2), dtype=torch.float64)
    torch.testing.assert_close(ft_loss(student, teacher, p1=p1, p2=p2), expected)
    torch.testing.assert_close(FTLoss(p1, p2)(student, teacher), expected)


def test_ft_pools_the_larger_factor_to_the_smaller():
    student = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    teacher = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(ft_loss(student, teacher), torch.tensor(naive_ft(student, teacher, 2, 1),
                                                                       dtype=torch.float64))
    torch.testing.assert_close(ft_loss(teacher, student), torch.tensor(naive_ft(teacher, student, 2, 1),
                                                                       dtype=torch.float64))


def test_ft_is_zero_for_equal_factors_and_scale_invariant():
    factor = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    assert float(ft_loss(factor, factor.clone())) == 0.0
    teacher = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ft_loss(3.0 * factor, teacher), ft_loss(factor, teacher))
    student = factor.float().requires_grad_(True)
    ft_loss(student, teacher.float()).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_bad_inputs_show_what_is_wrong():
    with pytest.raises(ValueError, match=r"student_factor \(2, 3, 4, 4\) and teacher_factor \(3, 3, 4, 4\)"):
        ft_loss(torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4))
    with pytest.raises(ValueError, match=r"teacher_factor must be 4-D .* got shape \(2, 3\)"):
        ft_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3))
    with pytest.raises(ValueError, match="p1 must be an integer >= 1"):
        ft_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), p1=0.5)
    with pytest.raises(ValueError, match="p2 must be 1 .* or 2"):
        ft_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), p2=3)
    with pytest.raises(ValueError, match="p2 must be"):
        FTLoss(p2=0)


def test_half_inputs_give_a_float32_result():
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    result = ft_loss(student.half(), teacher.half())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, ft_loss(student.half().float(), teacher.half().float()))
