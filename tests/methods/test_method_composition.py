"""Several terms in one run: each is logged on its own and the total is their weighted sum."""

from __future__ import annotations

import pytest
import torch

from method_helpers import build, make_batch


def test_ce_kd_at_crd_are_logged_separately_and_sum_with_their_weights():
    terms = [
        {"name": "ce", "weight": 1.0},
        {"name": "kd", "weight": 0.9, "temperature": 4},
        {"name": "at", "weight": 1000, "reduction": "sum"},
        {"name": "crd", "weight": 0.8, "nce_k": 16, "feat_dim": 8},
    ]
    distiller = build(terms)
    out = distiller(make_batch(), epoch=0, progress=0.0)
    for key in ("ce", "kd", "at", "crd"):
        assert key in out.terms and out.terms[key].shape == ()
    assert {"at/s0_t0", "at/s1_t1", "at/s2_t2"} <= set(out.terms)
    expected = 1.0 * out.terms["ce"] + 0.9 * out.terms["kd"] + 1000 * out.terms["at"] + 0.8 * out.terms["crd"]
    assert torch.allclose(out.loss.detach(), expected, rtol=1e-5)
    out.loss.backward()  # one graph through all four terms


def test_a_warmed_up_term_enters_the_total_with_its_scale():
    distiller = build([{"name": "ce"}, {"name": "dkd", "weight": 2.0, "warmup": 4}])
    out = distiller(make_batch(), epoch=1, progress=1.5)  # second epoch: scale 2/4
    expected = out.terms["ce"] + 2.0 * 0.5 * out.terms["dkd"]
    assert torch.allclose(out.loss.detach(), expected, rtol=1e-6)


def test_the_same_term_twice_needs_distinct_keys():
    from kdlab.config import ConfigError

    with pytest.raises(ConfigError, match="appears twice"):
        build([{"name": "kd", "temperature": 4}, {"name": "kd", "temperature": 2}])
    distiller = build([{"name": "kd", "temperature": 4}, {"name": "kd", "key": "kd_t2", "temperature": 2}])
    out = distiller(make_batch())
    assert {"kd", "kd_t2"} <= set(out.terms)
    assert not torch.allclose(out.terms["kd"], out.terms["kd_t2"])
