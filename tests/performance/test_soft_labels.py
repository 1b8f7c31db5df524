"""Top-k compression of logits: what is exact and what is approximated."""

from __future__ import annotations

import pytest
import torch

from kdlab.cache import compress_logits, reconstruct_logits, resolve_top_k


def test_topk_keeps_the_top_probabilities_and_the_tail_mass_at_temperature_one():
    torch.manual_seed(0)
    logits = torch.randn(5, 50) * 3
    values, indices, residual = compress_logits(logits, 10)
    rebuilt = reconstruct_logits(values, indices, residual, 50)
    p, q = logits.softmax(1), rebuilt.softmax(1)
    torch.testing.assert_close(q.gather(1, indices), p.gather(1, indices), rtol=1e-5, atol=1e-7)
    top = torch.zeros_like(p, dtype=torch.bool).scatter_(1, indices, True)
    torch.testing.assert_close((q * ~top).sum(1), (p * ~top).sum(1), rtol=1e-5, atol=1e-7)
    tail = q.masked_select(~top).reshape(5, 40)
    torch.testing.assert_close(tail, tail[:, :1].expand_as(tail))  # spread evenly


def test_reconstruction_keeps_the_top_logits_exactly():
    logits = torch.tensor([[4.0, -1.0, 2.0, 0.5, 0.0]])
    values, indices, residual = compress_logits(logits, 2)
    rebuilt = reconstruct_logits(values, indices, residual, 5)
    assert rebuilt[0, 0] == 4.0 and rebuilt[0, 2] == 2.0
    expected_fill = torch.log(torch.exp(torch.tensor([-1.0, 0.5, 0.0])).mean())
    torch.testing.assert_close(rebuilt[0, [1, 3, 4]], expected_fill.expand(3))


def test_automatic_k_is_full_logits_for_small_class_counts():
    assert resolve_top_k(None, 10) == 0
    assert resolve_top_k(None, 100) == 0
    assert resolve_top_k(None, 1000) == 10
    assert resolve_top_k(20, 10) == 0  # k >= K: nothing to drop
    assert resolve_top_k(5, 1000) == 5
    with pytest.raises(ValueError, match="top_k"):
        resolve_top_k(-1, 10)


def test_compress_names_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        compress_logits(torch.zeros(3), 1)
    with pytest.raises(ValueError, match="k must be"):
        compress_logits(torch.zeros(2, 4), 4)
