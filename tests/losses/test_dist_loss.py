"""dist_loss / DISTLoss against a loop reference of the Pearson correlations."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import DISTLoss, dist_loss


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def naive_pearson(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    da, db = [x - mean_a for x in a], [y - mean_b for y in b]
    dot = sum(x * y for x, y in zip(da, db))
    norm_a = math.sqrt(sum(x * x for x in da))
    norm_b = math.sqrt(sum(y * y for y in db))
    return dot / (norm_a * norm_b + 1e-8)


def naive_dist(student, teacher, beta: float, gamma: float, temperature: float) -> float:
    p_s = [naive_softmax([v / temperature for v in row]) for row in student.tolist()]
    p_t = [naive_softmax([v / temperature for v in row]) for row in teacher.tolist()]
    rows, classes = len(p_s), len(p_s[0])
    inter = 1 - sum(naive_pearson(p_s[i], p_t[i]) for i in range(rows)) / rows
    columns = [
        naive_pearson([p_s[i][k] for i in range(rows)], [p_t[i][k] for i in range(rows)]) for k in range(classes)
    ]
    intra = 1 - sum(columns) / classes
    return temperature**2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize(("beta", "gamma", "temperature"), [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0), (0.0, 1.0, 2.0)])
def test_dist_matches_naive_loop_reference(beta: float, gamma: float, temperature: float) -> None:
    student, teacher = torch.randn(7, 5, dtype=torch.float64) * 3, torch.randn(7, 5, dtype=torch.float64) * 3
    result = dist_loss(student, teacher, beta=beta, gamma=gamma, temperature=temperature)
    expected = naive_dist(student, teacher, beta, gamma, temperature)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


def test_dist_defaults_are_the_official_code_defaults() -> None:
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(dist_loss(student, teacher), torch.tensor(naive_dist(student, teacher, 1, 1, 1),
                                                                          dtype=torch.float64))


def test_dist_of_identical_logits_is_zero_up_to_the_epsilon() -> None:
    logits = torch.randn(5, 8, dtype=torch.float64) * 3
    torch.testing.assert_close(dist_loss(logits, logits.clone()), torch.tensor(0.0, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    # at T = 4 the centred probabilities are small, so the 1e-8 of the official code shows
    softened = dist_loss(logits, logits.clone(), temperature=4.0)
    assert 0 < float(softened) < 1e-2
    torch.testing.assert_close(softened, torch.tensor(naive_dist(logits, logits, 1, 1, 4), dtype=torch.float64))


def test_dist_is_invariant_to_a_shift_of_the_logits_of_each_sample() -> None:
    # the softmax of each row is unchanged by adding a constant to that row's logits
    student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    shifted = student + torch.randn(4, 1, dtype=torch.float64) * 10
    expected = dist_loss(student, teacher, temperature=2.0)
    torch.testing.assert_close(dist_loss(shifted, teacher, temperature=2.0), expected)


def test_dist_intra_term_of_a_single_sample_is_constant_one() -> None:
    student, teacher = torch.randn(1, 6, requires_grad=True), torch.randn(1, 6)
    intra = dist_loss(student, teacher, beta=0.0, gamma=1.0)
    torch.testing.assert_close(intra, torch.tensor(1.0))
    intra.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_dist_gradient_reaches_student_and_is_finite() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    dist_loss(student, torch.randn(4, 10), temperature=4.0).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_dist_shape_mismatch_error_shows_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"dist_loss: student_logits \(4, 10\) and teacher_logits \(4, 9\)"):
        dist_loss(torch.randn(4, 10), torch.randn(4, 9))


def test_dist_wrong_ndim_error_shows_the_shape() -> None:
    message = r"dist_loss: student_logits must be 2-D \(batch, classes\), got shape \(10,\)"
    with pytest.raises(ValueError, match=message):
        dist_loss(torch.randn(10), torch.randn(10))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": 0.0}, r"temperature must be > 0"),
    ({"beta": -1.0}, r"beta must be >= 0"),
    ({"gamma": -0.5}, r"gamma must be >= 0"),
])
def test_dist_rejects_bad_hyper_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dist_loss(torch.randn(2, 3), torch.randn(2, 3), **kwargs)


def test_dist_half_and_bfloat16_inputs_give_float32_result() -> None:
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    for dtype in (torch.float16, torch.bfloat16):
        result = dist_loss(student.to(dtype), teacher.to(dtype), temperature=4.0)
        assert result.dtype == torch.float32
        expected = dist_loss(student.to(dtype).float(), teacher.to(dtype).float(), temperature=4.0)
        torch.testing.assert_close(result, expected)


def test_dist_module_matches_function() -> None:
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    module = DISTLoss(beta=2.0, gamma=0.5, temperature=3.0)
    torch.testing.assert_close(module(student, teacher), dist_loss(student, teacher, 2.0, 0.5, 3.0))
    assert "beta=2.0" in repr(module)
    with pytest.raises(ValueError, match="DISTLoss: temperature must be > 0"):
        DISTLoss(temperature=-1.0)
