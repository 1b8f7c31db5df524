"""nst_loss / NSTLoss against a loop reference over samples and channel pairs (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import NSTLoss, nst_loss


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


def naive_channels(feature: list[list[list[float]]], out_h: int, out_w: int) -> list[list[float]]:
    """One sample's channels, each pooled to out_h x out_w, flattened and L2-normalised."""
    rows = []
    for grid in feature:
        flat = [v for row in naive_block_mean(grid, out_h, out_w) for v in row]
        norm = math.sqrt(sum(v * v for v in flat))
        rows.append([v / norm for v in flat])
    return rows


def naive_kernel_mean(a: list[list[float]], b: list[list[float]]) -> float:
    total = 0.0
    for x in a:
        for y in b:
            total += sum(p * q for p, q in zip(x, y)) ** 2
    return total / (len(a) * len(b))


def naive_nst(student: torch.Tensor, teacher: torch.Tensor) -> float:
    out_h, out_w = min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3])
    total = 0.0
    for s_sample, t_sample in zip(student.tolist(), teacher.tolist()):
        s = naive_channels(s_sample, out_h, out_w)
        t = naive_channels(t_sample, out_h, out_w)
        total += naive_kernel_mean(t, t) + naive_kernel_mean(s, s) - 2 * naive_kernel_mean(s, t)
    return total / student.shape[0]


def test_nst_matches_naive_loop_reference() -> None:
    student = torch.randn(3, 4, 3, 5, dtype=torch.float64)
    teacher = torch.randn(3, 6, 3, 5, dtype=torch.float64)
    expected = torch.tensor(naive_nst(student, teacher), dtype=torch.float64)
    torch.testing.assert_close(nst_loss(student, teacher), expected)


def test_nst_pools_the_larger_map_to_the_smaller_size() -> None:
    student = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    teacher = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    expected = torch.tensor(naive_nst(student, teacher), dtype=torch.float64)
    torch.testing.assert_close(nst_loss(student, teacher), expected)
    swapped = torch.tensor(naive_nst(teacher, student), dtype=torch.float64)
    torch.testing.assert_close(nst_loss(teacher, student), swapped)


def test_nst_lists_of_layers_are_summed() -> None:
    pairs = [
        (torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 5, 4, 4, dtype=torch.float64)),
        (torch.randn(2, 4, 2, 2, dtype=torch.float64), torch.randn(2, 2, 4, 4, dtype=torch.float64)),
    ]
    expected = sum(naive_nst(s, t) for s, t in pairs)
    result = nst_loss([s for s, _ in pairs], [t for _, t in pairs])
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_nst_of_identical_features_is_zero_and_is_scale_invariant() -> None:
    feature = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(nst_loss(feature, feature.clone()), torch.tensor(0.0, dtype=torch.float64))
    teacher = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(nst_loss(7.0 * feature, teacher), nst_loss(feature, teacher))


def test_nst_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(2, 4, 6, 6, requires_grad=True)
    nst_loss(student, torch.randn(2, 8, 3, 3)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_nst_batch_mismatch_error_shows_both_shapes() -> None:
    match = r"nst_loss: student_features \(4, 3, 5, 5\) and teacher_features \(2, 3, 5, 5\)"
    with pytest.raises(ValueError, match=match):
        nst_loss(torch.randn(4, 3, 5, 5), torch.randn(2, 3, 5, 5))


def test_nst_rejects_non_4d_and_mismatched_lists() -> None:
    with pytest.raises(ValueError, match=r"teacher_features must be 4-D .* got shape \(4, 3\)"):
        nst_loss(torch.randn(4, 3, 5, 5), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"teacher_features\[0\] must be 4-D .* got shape \(4, 3\)"):
        nst_loss([torch.randn(4, 3, 5, 5)], [torch.randn(4, 3)])
    with pytest.raises(ValueError, match="equal length"):
        nst_loss([torch.randn(4, 3, 5, 5)], [])


def test_nst_half_inputs_give_float32_result() -> None:
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    for dtype in (torch.float16, torch.bfloat16):
        result = nst_loss(student.to(dtype), teacher.to(dtype))
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, nst_loss(student.to(dtype).float(), teacher.to(dtype).float()))
        torch.testing.assert_close(result, nst_loss(student, teacher), rtol=0.05, atol=1e-2)


def test_nst_module_matches_function() -> None:
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    torch.testing.assert_close(NSTLoss()(student, teacher), nst_loss(student, teacher))
