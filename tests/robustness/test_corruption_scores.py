"""mCE and mean corruption accuracy (kdlab.eval.corruption_scores) against a naive float64 reference."""

from __future__ import annotations

import random

import pytest

from kdlab.eval.corruption_scores import corruption_error_ratio, mean_corruption_accuracy


def _naive_mce(cells, reference, clean, reference_clean):
    ratios, relative = [], []
    for name in sorted(cells):
        errors = [100.0 - cells[name][s] for s in sorted(cells[name])]
        ref_errors = [100.0 - reference[name][s] for s in sorted(cells[name])]
        ratios.append(sum(errors) / sum(ref_errors))
        added = [e - (100.0 - clean) for e in errors]
        ref_added = [e - (100.0 - reference_clean) for e in ref_errors]
        relative.append(sum(added) / sum(ref_added))
    return 100.0 * sum(ratios) / len(ratios), 100.0 * sum(relative) / len(relative)


def test_mce_and_relative_mce_match_a_naive_reference():
    rng = random.Random(0)
    names = ["gaussian_noise", "fog", "contrast"]
    cells = {n: {s: rng.uniform(20, 60) for s in range(1, 6)} for n in names}
    reference = {n: {s: rng.uniform(10, 50) for s in range(1, 6)} for n in names}
    out = corruption_error_ratio(cells, reference, clean=80.0, reference_clean=75.0)
    mce, relative = _naive_mce(cells, reference, 80.0, 75.0)
    assert out["mce"] == pytest.approx(mce, rel=1e-12)
    assert out["relative_mce"] == pytest.approx(relative, rel=1e-12)
    assert out["compared"] == sorted(names)


def test_a_model_against_itself_is_100_and_more_robust_is_lower():
    cells = {"fog": {1: 70.0, 2: 60.0}, "snow": {1: 50.0, 2: 40.0}}
    same = corruption_error_ratio(cells, cells, clean=90.0, reference_clean=90.0)
    assert same["mce"] == pytest.approx(100.0) and same["relative_mce"] == pytest.approx(100.0)
    better = {n: {s: v + 5 for s, v in by.items()} for n, by in cells.items()}
    assert corruption_error_ratio(better, cells)["mce"] < 100.0
    assert corruption_error_ratio(better, cells)["relative_mce"] is None  # no clean accuracies given


def test_only_shared_cells_are_compared_and_a_zero_error_reference_is_left_out():
    cells = {"fog": {1: 50.0, 2: 40.0}, "snow": {1: 50.0}, "blur": {1: 10.0}}
    reference = {"fog": {1: 60.0}, "snow": {1: 100.0}}
    out = corruption_error_ratio(cells, reference)
    assert out["compared"] == ["fog"] and out["mce"] == pytest.approx(100.0 * 50.0 / 40.0)
    with pytest.raises(ValueError, match="share no"):
        corruption_error_ratio({"blur": {1: 10.0}}, reference)


def test_mean_corruption_accuracy_and_its_checks():
    assert mean_corruption_accuracy({"fog": {1: 10.0, 2: 20.0}, "snow": {1: 60.0}}) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="at least one severity"):
        mean_corruption_accuracy({"fog": {}})
    with pytest.raises(ValueError, match="at least one severity"):
        mean_corruption_accuracy({})
