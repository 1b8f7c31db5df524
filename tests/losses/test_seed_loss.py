"""seed_loss / SEEDLoss and seed_update_queue against loop references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import SEEDLoss, seed_loss, seed_update_queue


def unit(row: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in row))
    return [v / norm for v in row]


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def naive_seed(student, teacher, queue, student_temperature: float, teacher_temperature: float) -> float:
    memory = [unit(q) for q in queue.tolist()]
    total = 0.0
    rows = list(zip(student.tolist(), teacher.tolist()))
    for s_raw, t_raw in rows:
        s, t = unit(s_raw), unit(t_raw)
        anchors = [t] + memory
        p_t = naive_softmax([dot(t, a) / teacher_temperature for a in anchors])
        p_s = naive_softmax([dot(s, a) / student_temperature for a in anchors])
        total += sum(-pt * math.log(ps) for pt, ps in zip(p_t, p_s))
    return total / len(rows)


def test_seed_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    queue = F.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
    expected = naive_seed(student, teacher, queue, 0.2, 0.5)
    result = seed_loss(student, teacher, queue, student_temperature=0.2, teacher_temperature=0.5)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_seed_with_default_temperatures_matches_naive_loop_reference() -> None:
    student, teacher = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    queue = torch.randn(6, 5, dtype=torch.float64)
    expected = naive_seed(student, teacher, queue, 0.2, 1e-4)
    torch.testing.assert_close(seed_loss(student, teacher, queue), torch.tensor(expected, dtype=torch.float64))


def test_seed_with_empty_queue_is_zero() -> None:
    result = seed_loss(torch.randn(3, 4), torch.randn(3, 4), torch.empty(0, 4))
    torch.testing.assert_close(result, torch.tensor(0.0))


def test_seed_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 5, requires_grad=True)
    seed_loss(student, torch.randn(4, 5), torch.randn(8, 5)).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_seed_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"seed_loss: student_embedding \(4, 5\) and teacher_embedding \(4, 6\)"):
        seed_loss(torch.randn(4, 5), torch.randn(4, 6), torch.randn(8, 6))


def test_seed_queue_dim_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"seed_loss: queue \(8, 3\) and teacher_embedding \(4, 5\)"):
        seed_loss(torch.randn(4, 5), torch.randn(4, 5), torch.randn(8, 3))


def test_seed_bfloat16_inputs_give_float32_result_close_to_float32() -> None:
    student, teacher, queue = torch.randn(6, 8), torch.randn(6, 8), torch.randn(10, 8)
    result = seed_loss(student.bfloat16(), teacher.bfloat16(), queue.bfloat16(), teacher_temperature=0.1)
    assert result.dtype == torch.float32
    expected = seed_loss(
        student.bfloat16().float(), teacher.bfloat16().float(), queue.bfloat16().float(), teacher_temperature=0.1
    )
    torch.testing.assert_close(result, expected)
    torch.testing.assert_close(
        result, seed_loss(student, teacher, queue, teacher_temperature=0.1), rtol=0.05, atol=0.05
    )


def test_seed_module_matches_function() -> None:
    student, teacher, queue = torch.randn(4, 5), torch.randn(4, 5), torch.randn(6, 5)
    module = SEEDLoss(student_temperature=0.3, teacher_temperature=0.05)
    torch.testing.assert_close(module(student, teacher, queue), seed_loss(student, teacher, queue, 0.3, 0.05))


def test_seed_update_queue_writes_fifo_with_wraparound() -> None:
    queue = torch.zeros(5, 2)
    new = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    updated, ptr = seed_update_queue(queue, 3, new)
    # Rows land at 3, 4 and (wrapping) 0, L2-normalised; rows 1 and 2 keep their old zeros.
    expected = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    torch.testing.assert_close(updated, expected)
    assert ptr == 1


def test_seed_update_queue_leaves_the_input_untouched() -> None:
    queue = torch.randn(4, 3)
    before = queue.clone()
    seed_update_queue(queue, 0, torch.randn(2, 3))
    assert torch.equal(queue, before)


def test_seed_update_queue_rejects_more_rows_than_the_queue_holds() -> None:
    with pytest.raises(ValueError, match=r"new \(5, 3\) into a queue \(4, 3\)"):
        seed_update_queue(torch.randn(4, 3), 0, torch.randn(5, 3))
