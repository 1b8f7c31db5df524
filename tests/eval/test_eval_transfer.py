"""Linear transfer (L2 tuned on validation, refit on train+val), its grid and its split."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.eval.linear_probe import _fit_lbfgs
from kdlab.eval.transfer import _fit, l2_grid, linear_transfer, split_validation


def _blobs(seed: int, n_per_class: int, classes: int = 4, dim: int = 6, noise: float = 0.5):
    return _three_splits(seed, noise, (n_per_class,), classes=classes, dim=dim)[0]


def _three_splits(seed: int, noise: float, n_per_class=(30, 10, 20), classes: int = 4, dim: int = 6):
    """Gaussian blobs around shared, well separated centres: one (x, y) per split size."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    splits = []
    for n in n_per_class:
        labels = torch.arange(classes).repeat_interleave(n)
        splits.append((centres[labels] + noise * torch.randn(labels.shape[0], dim, generator=g), labels))
    return splits


# -- l2_grid ---------------------------------------------------------------------------


def test_default_grid_is_the_reference_grid() -> None:
    grid = l2_grid()
    assert len(grid) == 45 and grid[0] == 1e-6 and grid[-1] == 1e5
    reference = torch.logspace(-6, 5, 45, dtype=torch.float64).tolist()
    assert grid == pytest.approx(reference, rel=1e-12)
    ratios = [b / a for a, b in zip(grid, grid[1:])]
    assert ratios == pytest.approx([10 ** (11 / 44)] * 44, rel=1e-12)


def test_custom_grid_and_grid_errors() -> None:
    assert l2_grid(0.01, 100.0, 5) == pytest.approx((0.01, 0.1, 1.0, 10.0, 100.0), rel=1e-12)
    assert l2_grid(3.0, 3.0, 1) == (3.0,)
    with pytest.raises(ValueError, match="count"):
        l2_grid(count=0)
    with pytest.raises(ValueError, match="low must be a finite number > 0"):
        l2_grid(0.0, 1.0)
    with pytest.raises(ValueError, match="high must be >= low"):
        l2_grid(1.0, 0.1)
    with pytest.raises(ValueError, match="count=1 needs low == high"):
        l2_grid(1.0, 2.0, 1)


# -- split_validation --------------------------------------------------------------------


def test_split_is_stratified_disjoint_and_complete() -> None:
    # Class sizes 10, 5, 2, 1, 7: validation shares round(0.2 * n) half up, clamped to
    # [1, n - 1] for n >= 2 and 0 for the singleton.
    sizes = {0: 10, 1: 5, 2: 2, 3: 1, 4: 7}
    labels = torch.cat([torch.full((n,), c) for c, n in sizes.items()])
    labels = labels[torch.randperm(25, generator=torch.Generator().manual_seed(0))]
    train_idx, val_idx = split_validation(labels, fraction=0.2, seed=3)
    assert train_idx.dtype == val_idx.dtype == torch.int64
    assert train_idx.tolist() == sorted(train_idx.tolist()) and val_idx.tolist() == sorted(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(25))
    expected_val = {0: 2, 1: 1, 2: 1, 3: 0, 4: 1}
    for c, n in sizes.items():
        assert int((labels[val_idx] == c).sum()) == expected_val[c]
        assert int((labels[train_idx] == c).sum()) == n - expected_val[c] >= 1


def test_split_rounds_half_up_and_keeps_a_training_sample() -> None:
    labels = torch.tensor([0] * 5 + [1] * 2)
    _, val_idx = split_validation(labels, fraction=0.5)
    assert int((labels[val_idx] == 0).sum()) == 3  # 2.5 -> 3
    _, val_idx = split_validation(labels, fraction=0.9)
    assert int((labels[val_idx] == 0).sum()) == 4 and int((labels[val_idx] == 1).sum()) == 1


def test_split_depends_on_seed_only() -> None:
    labels = torch.arange(6).repeat(20)
    first = split_validation(labels, 0.25, seed=7)
    again = split_validation(labels, 0.25, seed=7)
    other = split_validation(labels, 0.25, seed=8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])
    assert first[1].numel() == other[1].numel() == 6 * 5


def test_split_errors() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            split_validation(labels, fraction)
    with pytest.raises(ValueError, match="1-D"):
        split_validation(labels.view(2, 2))
    with pytest.raises(ValueError, match="integer class indices"):
        split_validation(labels.float())
    with pytest.raises(ValueError, match="non-empty"):
        split_validation(labels[:0])


# -- linear_transfer ---------------------------------------------------------------------


def test_separable_data_reaches_high_accuracy() -> None:
    (tx, ty), (vx, vy), (sx, sy) = _three_splits(0, noise=0.5)
    result = linear_transfer(tx, ty, vx, vy, sx, sy, l2_values=l2_grid(1e-3, 1e3, 7))
    assert set(result) == {"top1", "top5", "l2", "val_top1", "grid"}
    assert result["top1"] >= 95.0 and result["val_top1"] >= 95.0
    assert result["top5"] == 100.0  # 4 classes: top-5 is clipped to top-4
    assert result["l2"] in l2_grid(1e-3, 1e3, 7)


def _validation_accuracy(train_x, train_y, val_x, val_y, l2: float) -> float:
    """One grid point recomputed by hand: train-set standardisation, mean-loss fit with l2 / n."""
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False)
    with torch.enable_grad():
        w, b = _fit_lbfgs((train_x - mean) / std, train_y, 4, l2 / train_x.shape[0], 1000)
    predictions = (((val_x - mean) / std) @ w + b).argmax(1)
    return 100.0 * (predictions == val_y).sum().item() / val_y.numel()


def test_chosen_l2_is_the_validation_argmax() -> None:
    (tx, ty), (vx, vy), (sx, sy) = _three_splits(1, noise=3.0)  # overlapping: accuracy varies
    values = (1e3, 1e-2, 10.0, 1.0, 100.0, 0.1)  # unsorted on purpose
    result = linear_transfer(tx, ty, vx, vy, sx, sy, l2_values=values, standardize=True)
    by_hand = [(l2, _validation_accuracy(tx, ty, vx, vy, l2)) for l2 in values]
    assert [l2 for l2, _ in result["grid"]] == list(values)
    assert [acc for _, acc in result["grid"]] == pytest.approx([acc for _, acc in by_hand], abs=1e-9)
    best = max(acc for _, acc in by_hand)
    assert len({acc for _, acc in by_hand}) > 1  # the grid does discriminate
    assert result["val_top1"] == pytest.approx(best)
    assert result["l2"] == next(l2 for l2, acc in by_hand if acc == best)


def test_validation_ties_keep_the_first_grid_value_as_the_reference_code() -> None:
    (tx, ty), (vx, vy), (sx, sy) = _three_splits(2, noise=0.2)  # every weak penalty: 100%
    values = tuple(reversed(l2_grid(1e-4, 1e4, 9)))
    result = linear_transfer(tx, ty, vx, vy, sx, sy, l2_values=values)
    perfect = [l2 for l2, acc in result["grid"] if acc == 100.0]
    assert len(perfect) >= 3
    assert result["l2"] == perfect[0] and result["val_top1"] == 100.0


def test_refit_uses_train_and_validation() -> None:
    # Class 3 is absent from train: no validation fit can predict it, only the refit on
    # train + val can. The test set is balanced, so without class 3 top-1 is <= 75%.
    (tx, ty), (vx, vy), (sx, sy) = _three_splits(3, noise=0.3)
    keep = ty != 3
    result = linear_transfer(tx[keep], ty[keep], vx, vy, sx, sy, l2_values=(1e-2, 1.0))
    assert all(acc <= 75.0 + 1e-9 for _, acc in result["grid"])
    assert result["top1"] >= 95.0


def test_is_deterministic_and_runs_under_no_grad() -> None:
    splits = [t for pair in _three_splits(4, noise=2.0) for t in pair]
    kwargs = dict(l2_values=(0.1, 10.0, 1000.0))
    first = linear_transfer(*splits, **kwargs)
    with torch.no_grad():
        second = linear_transfer(*splits, **kwargs)
    assert first == second


def test_fit_matches_sklearn_with_c_equal_to_one_over_l2() -> None:
    """The documented mapping: kdlab l2 on the summed loss == scikit-learn's 1 / C."""
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    x, y = _blobs(5, 40, classes=3, dim=5, noise=2.5)
    x = x.double()
    for l2 in (0.5, 20.0):
        w, b = _fit(x, y, 3, l2, 2000)
        ours = torch.softmax(x @ w + b, dim=1)
        reference = sklearn_linear.LogisticRegression(C=1.0 / l2, tol=1e-12, max_iter=10_000)
        reference.fit(x.numpy(), y.numpy())
        theirs = torch.from_numpy(reference.predict_proba(x.numpy()))
        assert torch.allclose(ours, theirs, atol=1e-5), l2
        # The penalty makes W unique (its columns sum to zero), so compare it directly too.
        assert torch.allclose(w.T, torch.from_numpy(reference.coef_), atol=1e-4), l2


def test_linear_transfer_errors() -> None:
    (tx, ty), (vx, vy), (sx, sy) = _three_splits(6, noise=0.5)
    with pytest.raises(ValueError, match=r"val_y shape \(39,\) and val_x shape \(40, 6\)"):
        linear_transfer(tx, ty, vx, vy[:-1], sx, sy)
    with pytest.raises(ValueError, match=r"train_x and test_x must have the same feature dim.*\(80, 5\)"):
        linear_transfer(tx, ty, vx, vy, sx[:, :5], sy)
    with pytest.raises(ValueError, match="l2_values must contain at least one value"):
        linear_transfer(tx, ty, vx, vy, sx, sy, l2_values=())
    with pytest.raises(ValueError, match=r"l2_values must be finite and >= 0, got -1\.0"):
        linear_transfer(tx, ty, vx, vy, sx, sy, l2_values=(1.0, -1.0))
    with pytest.raises(ValueError, match="finite"):
        linear_transfer(tx, ty, vx, vy, sx, sy, l2_values=(math.inf,))
    with pytest.raises(ValueError, match="max_iter"):
        linear_transfer(tx, ty, vx, vy, sx, sy, max_iter=0)
    with pytest.raises(ValueError, match=r"train_y must lie in \[0, 3\)"):
        linear_transfer(tx, ty, vx, vy, sx, sy, num_classes=3)
    with pytest.raises(ValueError, match="2-D"):
        linear_transfer(tx[:, 0], ty, vx, vy, sx, sy)
