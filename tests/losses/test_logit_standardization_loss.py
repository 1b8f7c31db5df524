"""logit_standardize / LogitStandardization against a loop reference (unbiased std, official code)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import LogitStandardization, logit_standardize


def naive_standardize(row: list[float], eps: float) -> list[float]:
    mean = sum(row) / len(row)
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
    return [(v - mean) / (eps + std) for v in row]


@pytest.mark.parametrize("eps", [1e-7, 0.5])
def test_logit_standardize_matches_naive_loop_reference(eps: float) -> None:
    logits = torch.randn(5, 7, dtype=torch.float64) * 4 + 3
    expected = torch.tensor([naive_standardize(row, eps) for row in logits.tolist()], dtype=torch.float64)
    result = logit_standardize(logits, eps=eps)
    assert result.dtype == torch.float64 and result.shape == logits.shape
    torch.testing.assert_close(result, expected)


def test_logit_standardize_uses_the_unbiased_std() -> None:
    out = logit_standardize(torch.randn(3, 10, dtype=torch.float64), eps=0.0)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(out.std(dim=1, unbiased=True), torch.ones(3, dtype=torch.float64))
    assert not torch.allclose(out.std(dim=1, unbiased=False), torch.ones(3, dtype=torch.float64))


def test_logit_standardize_is_invariant_to_shift_and_positive_scale() -> None:
    logits = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(logit_standardize(logits * 5 + 2, eps=0.0), logit_standardize(logits, eps=0.0))


def test_logit_standardize_works_over_the_last_dimension_of_any_shape() -> None:
    logits = torch.randn(2, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(logit_standardize(logits)[1], logit_standardize(logits[1]))


def test_logit_standardize_of_a_constant_row_is_zero_and_finite() -> None:
    out = logit_standardize(torch.full((2, 4), 3.0))
    assert torch.equal(out, torch.zeros(2, 4))


def test_logit_standardize_errors_show_the_shape() -> None:
    with pytest.raises(ValueError, match=r"logit_standardize: needs at least 2 classes .* shape \(4, 1\)"):
        logit_standardize(torch.randn(4, 1))
    with pytest.raises(ValueError, match=r"logit_standardize: logits must have at least 1 dimensions"):
        logit_standardize(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"eps must be >= 0"):
        logit_standardize(torch.randn(2, 3), eps=-1.0)


def test_logit_standardize_half_and_bfloat16_inputs_give_float32() -> None:
    logits = torch.randn(3, 8)
    for dtype in (torch.float16, torch.bfloat16):
        out = logit_standardize(logits.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, logit_standardize(logits.to(dtype).float()))


def test_logit_standardization_module_matches_function() -> None:
    logits = torch.randn(4, 5)
    module = LogitStandardization(eps=1e-3)
    torch.testing.assert_close(module(logits), logit_standardize(logits, eps=1e-3))
    assert "eps=0.001" in repr(module)
