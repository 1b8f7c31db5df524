"""fsp_matrix / fsp_loss / FSPLoss against loop references over samples and channel pairs (float64)."""

from __future__ import annotations

import pytest
import torch

from kdlab.losses import FSPLoss, fsp_loss, fsp_matrix


def naive_pool(grid: list[list[float]], out_h: int, out_w: int) -> list[list[float]]:
    """Average non-overlapping blocks (the sizes divide exactly in these tests)."""
    bh, bw = len(grid) // out_h, len(grid[0]) // out_w
    return [
        [sum(grid[i * bh + a][j * bw + b] for a in range(bh) for b in range(bw)) / (bh * bw) for j in range(out_w)]
        for i in range(out_h)
    ]


def naive_matrix(lower: torch.Tensor, upper: torch.Tensor) -> list[list[list[float]]]:
    h, w = min(lower.shape[2], upper.shape[2]), min(lower.shape[3], upper.shape[3])
    out = []
    for low_sample, up_sample in zip(lower.tolist(), upper.tolist()):
        low = [naive_pool(grid, h, w) for grid in low_sample]
        up = [naive_pool(grid, h, w) for grid in up_sample]
        out.append([
            [sum(u[y][x] * v[y][x] for y in range(h) for x in range(w)) / (h * w) for v in low] for u in up
        ])
    return out


def naive_fsp(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> float:
    total = 0.0
    for k in range(len(student) - 1):
        gs, gt = naive_matrix(student[k], student[k + 1]), naive_matrix(teacher[k], teacher[k + 1])
        squares = [(a - b) ** 2 for sb, tb in zip(gs, gt) for sr, tr in zip(sb, tb) for a, b in zip(sr, tr)]
        total += sum(squares) / len(squares)
    return total


def test_fsp_matrix_matches_the_loop_and_pools_the_larger_map():
    lower = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    for upper in (torch.randn(2, 5, 4, 6, dtype=torch.float64), torch.randn(2, 5, 2, 3, dtype=torch.float64)):
        result = fsp_matrix(lower, upper)
        assert result.shape == (2, 5, 3)
        torch.testing.assert_close(result, torch.tensor(naive_matrix(lower, upper), dtype=torch.float64))
    bigger_upper = torch.randn(2, 4, 8, 12, dtype=torch.float64)  # the upper map larger: it is the one pooled
    torch.testing.assert_close(fsp_matrix(lower, bigger_upper),
                               torch.tensor(naive_matrix(lower, bigger_upper), dtype=torch.float64))


def test_fsp_loss_sums_the_pairs_of_consecutive_maps():
    shapes = [(3, 8, 8), (3, 8, 8), (4, 4, 4), (6, 2, 2)]
    student = [torch.randn(2, *s, dtype=torch.float64) for s in shapes]
    teacher = [torch.randn(2, c, 2 * h, 2 * w, dtype=torch.float64) for c, h, w in shapes]  # other sizes: allowed
    expected = torch.tensor(naive_fsp(student, teacher), dtype=torch.float64)
    torch.testing.assert_close(fsp_loss(student, teacher), expected)
    torch.testing.assert_close(FSPLoss()(student, teacher), expected)


def test_fsp_of_identical_maps_is_zero_and_gradients_reach_the_student():
    maps = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    assert float(fsp_loss(maps, [m.clone() for m in maps])) == 0.0
    student = [m.clone().requires_grad_(True) for m in maps]
    fsp_loss(student, [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]).backward()
    assert all(s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0 for s in student)


def test_unequal_channels_name_the_positions_and_the_counts():
    student = [torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4), torch.randn(2, 32, 2, 2)]
    teacher = [torch.randn(2, 16, 4, 4), torch.randn(2, 32, 4, 4), torch.randn(2, 64, 2, 2)]
    with pytest.raises(ValueError, match=r"differ at \[1\] 16 vs 32, \[2\] 32 vs 64"):
        fsp_loss(student, teacher)


def test_bad_inputs_show_what_is_wrong():
    with pytest.raises(ValueError, match="equal length >= 2"):
        fsp_loss([torch.randn(2, 3, 4, 4)], [torch.randn(2, 3, 4, 4)])
    with pytest.raises(ValueError, match="equal length"):
        fsp_loss([torch.randn(2, 3, 4, 4)] * 2, [torch.randn(2, 3, 4, 4)] * 3)
    with pytest.raises(ValueError, match="lists of feature maps"):
        fsp_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"teacher_features\[1\] must be 4-D .* got shape \(2, 3\)"):
        fsp_loss([torch.randn(2, 3, 4, 4)] * 2, [torch.randn(2, 3, 4, 4), torch.randn(2, 3)])
    with pytest.raises(ValueError, match=r"fsp_matrix: lower \(2, 3, 4, 4\) and upper \(3, 3, 4, 4\)"):
        fsp_matrix(torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4))


def test_half_inputs_give_a_float32_result():
    student = [torch.randn(2, 3, 4, 4), torch.randn(2, 4, 2, 2)]
    teacher = [torch.randn(2, 3, 4, 4), torch.randn(2, 4, 2, 2)]
    for dtype in (torch.float16, torch.bfloat16):
        result = fsp_loss([s.to(dtype) for s in student], [t.to(dtype) for t in teacher])
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, fsp_loss(student, teacher), rtol=0.05, atol=1e-2)
