"""at_loss / ATLoss against a loop reference over samples, positions and channels."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import ATLoss, at_loss


def naive_map(feature: torch.Tensor, p: float) -> list[list[list[float]]]:
    """Per sample, an H x W grid of mean_c |f|^p."""
    batch, channels, height, width = feature.shape
    values = feature.tolist()
    return [
        [
            [sum(abs(values[b][c][h][w]) ** p for c in range(channels)) / channels for w in range(width)]
            for h in range(height)
        ]
        for b in range(batch)
    ]


def naive_block_mean(grid: list[list[float]], out_h: int, out_w: int) -> list[list[float]]:
    """Average non-overlapping blocks (sizes divide exactly in these tests)."""
    block_h, block_w = len(grid) // out_h, len(grid[0]) // out_w
    return [
        [
            sum(grid[i * block_h + a][j * block_w + b] for a in range(block_h) for b in range(block_w))
            / (block_h * block_w)
            for j in range(out_w)
        ]
        for i in range(out_h)
    ]


def naive_at(student: torch.Tensor, teacher: torch.Tensor, p: float) -> float:
    s_maps, t_maps = naive_map(student, p), naive_map(teacher, p)
    out_h = min(len(s_maps[0]), len(t_maps[0]))
    out_w = min(len(s_maps[0][0]), len(t_maps[0][0]))
    total, count = 0.0, 0
    for s_grid, t_grid in zip(s_maps, t_maps):
        s_flat = [v for row in naive_block_mean(s_grid, out_h, out_w) for v in row]
        t_flat = [v for row in naive_block_mean(t_grid, out_h, out_w) for v in row]
        s_norm = math.sqrt(sum(v * v for v in s_flat))
        t_norm = math.sqrt(sum(v * v for v in t_flat))
        for a, b in zip(s_flat, t_flat):
            total += (a / s_norm - b / t_norm) ** 2
            count += 1
    return total / count


def test_at_matches_naive_loop_reference() -> None:
    student = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    teacher = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(
        at_loss(student, teacher), torch.tensor(naive_at(student, teacher, 2), dtype=torch.float64)
    )


def test_at_with_odd_exponent_uses_absolute_values() -> None:
    student = torch.randn(4, 3, 3, 4, dtype=torch.float64)
    teacher = torch.randn(4, 2, 3, 4, dtype=torch.float64)
    result = at_loss(student, teacher, p=3)
    torch.testing.assert_close(result, torch.tensor(naive_at(student, teacher, 3), dtype=torch.float64))


def test_at_pools_the_larger_map_to_the_smaller_size() -> None:
    student = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    teacher = torch.randn(4, 5, 4, 4, dtype=torch.float64)
    expected = torch.tensor(naive_at(student, teacher, 2), dtype=torch.float64)
    torch.testing.assert_close(at_loss(student, teacher), expected)
    torch.testing.assert_close(at_loss(teacher, student), expected)


def test_at_of_identical_features_is_zero() -> None:
    feature = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(at_loss(feature, feature.clone()), torch.tensor(0.0))


def test_at_is_invariant_to_feature_scale() -> None:
    student, teacher = torch.randn(3, 4, 5, 5, dtype=torch.float64), torch.randn(3, 2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(at_loss(10.0 * student, teacher), at_loss(student, teacher))


def test_at_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(3, 4, 6, 6, requires_grad=True)
    at_loss(student, torch.randn(3, 8, 3, 3)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_at_batch_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"at_loss: student_feature \(4, 3, 5, 5\) and teacher_feature \(2, 3, 5, 5\)"):
        at_loss(torch.randn(4, 3, 5, 5), torch.randn(2, 3, 5, 5))


def test_at_rejects_non_4d_features_with_shape() -> None:
    with pytest.raises(ValueError, match=r"teacher_feature must be 4-D .* got shape \(4, 3\)"):
        at_loss(torch.randn(4, 3, 5, 5), torch.randn(4, 3))


def test_at_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher = torch.randn(4, 3, 5, 5), torch.randn(4, 6, 5, 5)
    result = at_loss(student.bfloat16(), teacher.bfloat16())
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, at_loss(student.bfloat16().float(), teacher.bfloat16().float()))
    torch.testing.assert_close(result, at_loss(student, teacher), rtol=0.05, atol=1e-3)


def test_at_module_matches_function() -> None:
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    torch.testing.assert_close(ATLoss(p=4)(student, teacher), at_loss(student, teacher, p=4))
