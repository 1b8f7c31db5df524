"""Frozen-embedding linear transfer: L2-regularised logistic regression tuned on a validation split.

The protocol of Kornblith et al. 2019 ("Do Better ImageNet Models Transfer Better?"), as run
by Ericsson et al. 2021 ("How Well Do Self-Supervised Models Transfer?") and by CoSS for
its transfer tables:

1. fit multinomial logistic regression on the frozen train embeddings by full-batch L-BFGS,
   once per L2 strength of a log-spaced grid, and score each fit on a validation split;
2. keep the strength with the best validation top-1;
3. refit with that strength on train + validation and report top-1 / top-5 on the test set.

What the reference code does (``linusericsson/ssl-transfer``, ``linear.py``): scikit-learn
``LogisticRegression(solver="lbfgs", multi_class="multinomial", warm_start=True)`` with
``C = 1 / wd`` for ``wd`` in ``torch.logspace(-6, 5, 45)`` (45 values from 1e-6 to 1e5),
scikit-learn's default ``max_iter=100`` (warm starts chain every fit, the final refit
included, to the previous solution), on the *raw* penultimate features (no feature
standardisation; only the input images are ImageNet-normalised). scikit-learn minimises
``C * sum_i CE_i + 1/2 * ||W||^2`` with the intercept unpenalised, i.e.
``sum_i CE_i + wd/2 * ||W||^2``. Ties on validation keep the *first* grid value (the
weakest penalty) there; some datasets are scored by mean per-class accuracy or mAP instead
of top-1; the validation split is a random 20% of train (seed 0) unless the data set ships one.
That code is the reference followed here; Ericsson et al. take the protocol and its grid
from Kornblith et al.

kdlab's parametrisation: ``l2`` is that same ``wd`` (= 1 / C), the weight of
``l2/2 * ||W||^2`` against the *summed* cross-entropy, so the default grid
:func:`l2_grid` is exactly the reference grid. The shared L-BFGS fit of
:mod:`kdlab.eval.linear_probe` minimises the *mean* cross-entropy, so each fit on n samples
is handed ``l2 / n``; the refit on train + val therefore has a slightly weaker per-sample
penalty than the validation fits, as in scikit-learn. (``linear_probe``'s ``l2`` is this
per-sample value.) As the reference: raw features by default (``standardize=True``
standardises them with the fitting set's mean / std, as ``linear_probe`` does) and
validation ties keep the first grid value. Different from it: L-BFGS runs to convergence
from zero weights (``max_iter`` default 1000) instead of warm-started 100-iteration fits,
so the answer does not depend on the order of the grid's fits; and top-1 is the only score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kdlab.eval._checks import (
    as_float,
    require_2d,
    require_label_range,
    require_labels,
    require_positive_int,
)
from kdlab.eval.linear_probe import _fit_lbfgs
from kdlab.eval.metrics import topk_accuracy


def l2_grid(low: float = 1e-6, high: float = 1e5, count: int = 45) -> tuple[float, ...]:
    """``count`` log-spaced L2 strengths from ``low`` to ``high`` inclusive, ascending.

    The defaults are the Kornblith et al. 2019 / Ericsson et al. 2021 grid (``wd`` of
    ``torch.logspace(-6, 5, 45)``, sklearn ``C = 1 / wd``), in kdlab's convention: the
    weight of ``l2/2 * ||W||^2`` against the summed cross-entropy (see the module docstring).
    Value i is ``10 ** (log10(low) + i * (log10(high) - log10(low)) / (count - 1))``.
    """
    require_positive_int("count", count)
    for name, value in (("low", low), ("high", high)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if high < low:
        raise ValueError(f"high must be >= low, got low={low!r}, high={high!r}")
    if count == 1:
        if low != high:
            raise ValueError(f"count=1 needs low == high, got low={low!r}, high={high!r}")
        return (float(low),)
    log_low, log_high = math.log10(low), math.log10(high)
    step = (log_high - log_low) / (count - 1)
    inner = tuple(10.0 ** (log_low + i * step) for i in range(1, count - 1))
    # The endpoints are returned exactly as given, not as 10**log10(x) round trips.
    return (float(low), *inner, float(high))


def split_validation(
    labels: torch.Tensor, fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded split of sample indices into (train_idx, val_idx).

    Each class of n_c samples sends ``round(fraction * n_c)`` of them (half rounds up) to
    validation, at least 1 when ``n_c >= 2`` and at most ``n_c - 1``, so every class keeps a
    training sample; a class with a single sample stays entirely in train. Which samples go
    is drawn by one CPU ``torch.Generator`` seeded with ``seed``, visiting classes in
    increasing label order, so the split is the same on every device.

    Args:
        labels: (N,) integer labels.
        fraction: share of each class sent to validation, in (0, 1).
        seed: the generator seed.

    Returns:
        Two disjoint, ascending int64 index tensors on ``labels.device`` covering ``0..N-1``.
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    require_labels("labels", labels, labels, "labels")
    if labels.shape[0] == 0:
        raise ValueError("labels must be non-empty, got shape (0,)")
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    cpu_labels = labels.detach().cpu()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    val_parts = []
    for label in torch.unique(cpu_labels, sorted=True):
        members = torch.nonzero(cpu_labels == label).flatten()
        n_class = members.numel()
        if n_class < 2:
            continue
        # floor(x + 0.5) rounds halves up; Python's round() would send 2.5 to 2.
        n_val = min(max(1, math.floor(fraction * n_class + 0.5)), n_class - 1)
        shuffled = members[torch.randperm(n_class, generator=generator)]
        val_parts.append(shuffled[:n_val])
    in_val = torch.zeros(cpu_labels.shape[0], dtype=torch.bool)
    if val_parts:
        in_val[torch.cat(val_parts)] = True
    train_idx = torch.nonzero(~in_val).flatten()
    val_idx = torch.nonzero(in_val).flatten()
    return train_idx.to(labels.device), val_idx.to(labels.device)


def _check_l2_values(l2_values: Sequence[float] | None) -> tuple[float, ...]:
    if l2_values is None:
        return l2_grid()
    values = tuple(l2_values)
    if not values:
        raise ValueError("l2_values must contain at least one value, got an empty sequence")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"l2_values must hold numbers, got {value!r} in {values}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"l2_values must be finite and >= 0, got {value!r} in {values}")
    return tuple(float(v) for v in values)


def _validate(
    splits: Sequence[tuple[str, torch.Tensor, torch.Tensor]], num_classes: int | None
) -> int:
    """Check (name, x, y) triples share a feature dim and valid labels; return num_classes."""
    first_name, first_x, _ = splits[0]
    for name, x, y in splits:
        require_2d(f"{name}_x", x)
        require_labels(f"{name}_y", y, x, f"{name}_x")
        if x.shape[1] != first_x.shape[1]:
            raise ValueError(
                f"{first_name}_x and {name}_x must have the same feature dim, got shapes "
                f"{tuple(first_x.shape)} and {tuple(x.shape)}"
            )
    if num_classes is None:
        num_classes = max(int(y.max().item()) for _, _, y in splits) + 1
    require_positive_int("num_classes", num_classes)
    for name, _, y in splits:
        require_label_range(f"{name}_y", y, num_classes)
    return num_classes


def _standardiser(fit_x: torch.Tensor, enabled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map x -> (x - mean) / std with the fitting set's statistics (identity if disabled)."""
    if not enabled:
        return lambda x: x
    mean = fit_x.mean(dim=0)
    # Constant features would divide by zero; a tiny std keeps them at exactly 0.
    std = fit_x.std(dim=0, unbiased=False).clamp_min(1e-8)
    return lambda x: (x - mean) / std


def _fit(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``sum_i CE_i + l2/2 ||W||^2`` (the shared fit takes the mean, hence l2 / n)."""
    with torch.enable_grad():
        return _fit_lbfgs(x, y, num_classes, l2 / x.shape[0], max_iter)


def linear_transfer(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    l2_values: Sequence[float] | None = None,
    max_iter: int = 1000,
    num_classes: int | None = None,
    standardize: bool = False,
) -> dict[str, Any]:
    """Kornblith-style linear transfer: L2 chosen on validation, refit on train+val, test scored.

    For each ``l2`` in ``l2_values`` a multinomial logistic regression
    ``argmin_{W, b} sum_i CE(W^T x_i + b, y_i) + l2/2 * ||W||_F^2`` (bias unpenalised; l2 is
    scikit-learn's 1 / C, see the module docstring) is fitted on ``train_x`` by L-BFGS from
    zero weights and scored by top-1 on ``val_x``. The best ``l2`` -- on ties the first of
    ``l2_values``, as the reference code keeps it -- is refitted on train + val and scored on ``test_x``. With
    ``standardize`` each fit standardises features by its own fitting set's mean and std.

    Args:
        train_x, val_x, test_x: (N_split, D) frozen features.
        train_y, val_y, test_y: (N_split,) integer labels in ``[0, num_classes)``.
        l2_values: the grid, any order; defaults to :func:`l2_grid` (45 values, 1e-6..1e5).
        max_iter: L-BFGS iteration budget per fit.
        num_classes: defaults to ``max(train_y, val_y, test_y) + 1``; a class absent from
            train still gets an output, and is learnt by the train + val refit.
        standardize: standardise features, or fit them raw (default, as the reference code).

    Returns:
        ``{"top1": test percent, "top5": test percent (k clipped to num_classes), "l2": chosen
        value, "val_top1": its validation percent, "grid": [(l2, val_top1), ...] in the order
        of l2_values}``. Deterministic on a given device: every fit starts from zero.
    """
    num_classes = _validate(
        [("train", train_x, train_y), ("val", val_x, val_y), ("test", test_x, test_y)], num_classes
    )
    grid_values = _check_l2_values(l2_values)
    require_positive_int("max_iter", max_iter)
    x_train = as_float(train_x.detach())
    device, dtype = x_train.device, x_train.dtype
    x_val = as_float(val_x.detach()).to(device=device, dtype=dtype)
    x_test = as_float(test_x.detach()).to(device=device, dtype=dtype)
    y_train, y_val, y_test = (y.detach().to(device).long() for y in (train_y, val_y, test_y))

    standardise = _standardiser(x_train, standardize)
    x_train_std, x_val_std = standardise(x_train), standardise(x_val)
    grid: list[tuple[float, float]] = []
    for l2 in grid_values:
        weight, bias = _fit(x_train_std, y_train, num_classes, l2, max_iter)
        with torch.no_grad():
            val_top1 = topk_accuracy(x_val_std @ weight + bias, y_val, ks=(1,))[1]
        grid.append((l2, val_top1))
    # the first grid point with the best validation top-1 (max keeps the first of equal keys)
    best_l2, best_val = max(grid, key=lambda point: point[1])

    x_fit = torch.cat([x_train, x_val])
    y_fit = torch.cat([y_train, y_val])
    standardise = _standardiser(x_fit, standardize)
    weight, bias = _fit(standardise(x_fit), y_fit, num_classes, best_l2, max_iter)
    with torch.no_grad():
        test_acc = topk_accuracy(standardise(x_test) @ weight + bias, y_test, ks=(1, 5))
    return {"top1": test_acc[1], "top5": test_acc[5], "l2": best_l2, "val_top1": best_val, "grid": grid}
