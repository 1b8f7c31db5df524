"""hcl_loss / HCLLoss against a float64 loop reference and handmade cases."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import HCLLoss, hcl_loss

Grid = list[list[float]]


def cell_bounds(index: int, size_in: int, size_out: int) -> tuple[int, int]:
    # Adaptive average pooling: cell i covers [floor(i * n / l), ceil((i + 1) * n / l)).
    return (index * size_in) // size_out, -(-((index + 1) * size_in) // size_out)


def average_pool(grid: Grid, size: int) -> Grid:
    height, width = len(grid), len(grid[0])
    pooled = []
    for i in range(size):
        row = []
        top, bottom = cell_bounds(i, height, size)
        for j in range(size):
            left, right = cell_bounds(j, width, size)
            cell = [grid[y][x] for y in range(top, bottom) for x in range(left, right)]
            row.append(sum(cell) / len(cell))
        pooled.append(row)
    return pooled


def mean_squared(a: list[list[Grid]], b: list[list[Grid]]) -> float:
    total, count = 0.0, 0
    for sample_a, sample_b in zip(a, b):
        for grid_a, grid_b in zip(sample_a, sample_b):
            for row_a, row_b in zip(grid_a, grid_b):
                for x, y in zip(row_a, row_b):
                    total += (x - y) ** 2
                    count += 1
    return total / count


def naive_hcl(student: list[torch.Tensor], teacher: list[torch.Tensor], pool_sizes: tuple[int, ...]) -> float:
    total = 0.0
    for fs, ft in zip(student, teacher):
        s, t = fs.tolist(), ft.tolist()
        height = len(s[0][0])
        numerator, denominator, weight = mean_squared(s, t), 1.0, 1.0
        for size in pool_sizes:
            if size < height:
                weight = weight / 2
                pooled_s = [[average_pool(g, size) for g in sample] for sample in s]
                pooled_t = [[average_pool(g, size) for g in sample] for sample in t]
                numerator += weight * mean_squared(pooled_s, pooled_t)
                denominator += weight
        total += numerator / denominator
    return total


SHAPES = [(2, 3, 1, 1), (2, 3, 2, 3), (2, 2, 4, 4), (1, 3, 8, 5), (2, 2, 6, 6), (2, 2, 3, 7), (1, 2, 9, 9)]


@pytest.mark.parametrize("pool_sizes", [(4, 2, 1), (1,), (3, 2), (1, 2, 4)])
def test_hcl_matches_naive_loop_reference(pool_sizes: tuple[int, ...]) -> None:
    student = [torch.randn(*shape, dtype=torch.float64) for shape in SHAPES]
    teacher = [torch.randn(*shape, dtype=torch.float64) for shape in SHAPES]
    result = hcl_loss(student, teacher, pool_sizes)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, torch.tensor(naive_hcl(student, teacher, pool_sizes), dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_hcl_single_level_matches_reference(shape: tuple[int, ...]) -> None:
    student, teacher = torch.randn(*shape, dtype=torch.float64), torch.randn(*shape, dtype=torch.float64)
    expected = naive_hcl([student], [teacher], (4, 2, 1))
    torch.testing.assert_close(hcl_loss([student], [teacher]), torch.tensor(expected, dtype=torch.float64))


def checkerboard(size: int) -> torch.Tensor:
    # +-1 pattern: mean squared value 1, and every 2x2-aligned block averages to 0.
    rows = [[1.0 if (y + x) % 2 == 0 else -1.0 for x in range(size)] for y in range(size)]
    return torch.tensor(rows, dtype=torch.float64).view(1, 1, size, size)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, 1.0),  # no pool size < 1: plain MSE
        (2, 1.0 / 1.5),  # only l=1, weight 1/2
        (4, 1.0 / 1.75),  # l=4 skipped (4 >= H); l=2, 1 with weights 1/2, 1/4
        (8, 1.0 / 1.875),  # l=4, 2, 1 with weights 1/2, 1/4, 1/8
    ],
)
def test_hcl_handmade_checkerboard_fixes_weights_and_skip_rule(size: int, expected: float) -> None:
    # Student - teacher is a checkerboard: pixel MSE 1, every pooled difference 0 (for l <= H/2),
    # so the loss is 1 / (1 + sum of the weights of the sizes used).
    teacher = torch.zeros(1, 1, size, size, dtype=torch.float64)
    result = hcl_loss([checkerboard(size)], [teacher])
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_hcl_constant_offset_gives_the_squared_offset_at_every_level() -> None:
    # A constant difference c survives every pooling: (c^2 + sum w c^2) / (1 + sum w) = c^2 per level.
    shapes = [(2, 3, 8, 8), (2, 3, 4, 4), (2, 3, 1, 1)]
    teacher = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    student = [t + 3.0 for t in teacher]
    torch.testing.assert_close(hcl_loss(student, teacher), torch.tensor(27.0, dtype=torch.float64))


def test_hcl_levels_are_summed() -> None:
    student = [torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4)]
    teacher = [torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4)]
    separate = hcl_loss(student[:1], teacher[:1]) + hcl_loss(student[1:], teacher[1:])
    torch.testing.assert_close(hcl_loss(student, teacher), separate)


def test_hcl_identical_maps_give_zero() -> None:
    maps = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 2, 2)]
    torch.testing.assert_close(hcl_loss(maps, [m.clone() for m in maps]), torch.tensor(0.0))


def test_hcl_shape_mismatch_error_shows_both_shapes() -> None:
    student = [torch.randn(2, 3, 8, 8), torch.randn(2, 4, 4, 4)]
    teacher = [torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)]
    with pytest.raises(ValueError, match=r"hcl_loss: student_features\[1\] \(2, 4, 4, 4\) and "
                                         r"teacher_features\[1\] \(2, 5, 4, 4\) must have the same shape"):
        hcl_loss(student, teacher)


def test_hcl_rejects_non_4d_maps() -> None:
    with pytest.raises(ValueError, match=r"hcl_loss: student_features\[0\] must be 4-D .* got shape \(2, 3, 8\)"):
        hcl_loss([torch.randn(2, 3, 8)], [torch.randn(2, 3, 8)])


def test_hcl_rejects_lists_of_different_lengths_and_empty_lists() -> None:
    with pytest.raises(ValueError, match="2 student_features and 1 teacher_features"):
        hcl_loss([torch.randn(1, 1, 2, 2)] * 2, [torch.randn(1, 1, 2, 2)])
    with pytest.raises(ValueError, match="empty"):
        hcl_loss([], [])


@pytest.mark.parametrize("bad", [(0,), (4, -1), (2.0,), (True,)])
def test_hcl_rejects_bad_pool_sizes(bad: tuple) -> None:
    with pytest.raises(ValueError, match="pool_sizes"):
        hcl_loss([torch.randn(1, 1, 4, 4)], [torch.randn(1, 1, 4, 4)], bad)
    with pytest.raises(ValueError, match="pool_sizes"):
        HCLLoss(bad)


def test_hcl_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 2, 2)]
    teacher = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 2, 2)]
    result = hcl_loss([s.bfloat16() for s in student], [t.bfloat16() for t in teacher])
    assert result.dtype == torch.float32
    rounded = hcl_loss([s.bfloat16().float() for s in student], [t.bfloat16().float() for t in teacher])
    torch.testing.assert_close(result, rounded)
    torch.testing.assert_close(result, hcl_loss(student, teacher), rtol=0.02, atol=0.01)


def test_hcl_half_inputs_are_computed_in_float32() -> None:
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    result = hcl_loss([student.half()], [teacher.half()])
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, hcl_loss([student.half().float()], [teacher.half().float()]))


def test_hcl_gradient_reaches_student_only_when_teacher_detached() -> None:
    student = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 3, 1, 1, requires_grad=True)]
    teacher_source = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 3, 1, 1, requires_grad=True)]
    hcl_loss(student, [t.detach() for t in teacher_source]).backward()
    for s in student:
        assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert all(t.grad is None for t in teacher_source)


def test_hcl_teacher_requiring_grad_changes_neither_value_nor_student_gradient() -> None:
    student_data, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    results = []
    for teacher_input in (teacher, teacher.clone().requires_grad_(True)):
        student = student_data.clone().requires_grad_(True)
        value = hcl_loss([student], [teacher_input])
        value.backward()
        results.append((value.detach(), student.grad))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])


def test_hcl_module_matches_function() -> None:
    student, teacher = [torch.randn(2, 3, 8, 8)], [torch.randn(2, 3, 8, 8)]
    module = HCLLoss(pool_sizes=(2, 1))
    assert module.pool_sizes == (2, 1)
    torch.testing.assert_close(module(student, teacher), hcl_loss(student, teacher, (2, 1)))
    assert math.isfinite(float(HCLLoss()(student, teacher)))
