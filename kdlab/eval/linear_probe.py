"""Linear probing of frozen features: how linearly decodable are the classes?

Two protocols:

* ``"lbfgs"``: full-batch multinomial logistic regression on standardised features with a
  small L2 penalty, solved by L-BFGS. It is a convex problem started from zero weights, so
  the answer does not depend on a seed and is fast for probe-sized data.
* ``"sgd"``: the MoCo linear-evaluation recipe on the raw frozen features: a linear layer
  trained with SGD (momentum 0.9, lr 30, no weight decay, lr x0.1 at epochs 60 and 80) on
  shuffled mini-batches. Initialisation and shuffling use a seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

from kdlab.eval._checks import (
    as_float,
    require_2d,
    require_label_range,
    require_labels,
    require_positive_int,
)
from kdlab.eval.metrics import topk_accuracy

METHODS = ("lbfgs", "sgd")


def _validate(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int | None,
) -> int:
    require_2d("train_x", train_x)
    require_2d("test_x", test_x)
    require_labels("train_y", train_y, train_x, "train_x")
    require_labels("test_y", test_y, test_x, "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must have the same feature dim, got shapes "
            f"{tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    if num_classes is None:
        num_classes = int(max(train_y.max().item(), test_y.max().item())) + 1
    require_positive_int("num_classes", num_classes)
    require_label_range("train_y", train_y, num_classes)
    require_label_range("test_y", test_y, num_classes)
    return num_classes


def _fit_lbfgs(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + l2/2 * ||W||^2 by full-batch L-BFGS; returns (W, b)."""
    weight = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _fit_sgd(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    milestones: Sequence[int],
    batch_size: int,
    weight_decay: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo-style SGD linear classifier on frozen features; returns (W, b)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    # MoCo initialises the linear head with N(0, 0.01) weights and zero bias.
    weight = (torch.randn(x.shape[1], num_classes, generator=generator, dtype=torch.float64) * 0.01)
    weight = weight.to(device=x.device, dtype=x.dtype).requires_grad_(True)
    bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)
    n = x.shape[0]
    for _ in range(epochs):
        # Permute on the CPU generator so the order is identical on every device.
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(x[idx] @ weight + bias, y[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
    return weight.detach(), bias.detach()


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    method: str = "lbfgs",
    epochs: int = 100,
    lr: float = 30.0,
    milestones: Sequence[int] = (60, 80),
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    l2: float = 1e-4,
    max_iter: int = 500,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Train a linear classifier on frozen ``train_x`` features and score it on ``test_x``.

    Args:
        train_x, test_x: (N, D) features (detached; gradients never flow back).
        train_y, test_y: (N,) integer labels.
        method: ``"lbfgs"`` (fast, full batch, standardised features) or ``"sgd"`` (MoCo recipe).
        epochs, lr, milestones, batch_size, weight_decay, seed: the ``"sgd"`` recipe's knobs.
        l2: L2 penalty on the weights for ``"lbfgs"`` (applied to the mean cross-entropy).
        max_iter: L-BFGS iteration budget for ``"lbfgs"``.
        num_classes: defaults to ``max(train_y, test_y) + 1``.

    Returns:
        ``{"top1": percent, "top5": percent, "method": method}`` on the test set (top-5 is
        clipped to the number of classes). Deterministic for a given seed and device.
    """
    num_classes = _validate(train_x, train_y, test_x, test_y, num_classes)
    classifier = fit_linear_classifier(
        train_x, train_y, method=method, epochs=epochs, lr=lr, milestones=milestones, batch_size=batch_size,
        weight_decay=weight_decay, seed=seed, l2=l2, max_iter=max_iter, num_classes=num_classes,
    )
    test_y = test_y.detach().to(classifier.weight.device).long()
    with torch.no_grad():
        acc = topk_accuracy(classifier(test_x), test_y, ks=(1, 5))
    return {"top1": acc[1], "top5": acc[5], "method": method}


@dataclass(frozen=True)
class LinearClassifier:
    """A fitted linear probe: ``logits = ((x - mean) / std) @ weight + bias`` (no standardisation for "sgd")."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: Optional[torch.Tensor] = None
    std: Optional[torch.Tensor] = None

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) frozen features -> (N, classes) logits, on the probe's device and dtype."""
        x = as_float(features.detach()).to(device=self.weight.device, dtype=self.weight.dtype)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x @ self.weight + self.bias


def fit_linear_classifier(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    method: str = "lbfgs",
    epochs: int = 100,
    lr: float = 30.0,
    milestones: Sequence[int] = (60, 80),
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    l2: float = 1e-4,
    max_iter: int = 500,
    num_classes: int | None = None,
) -> LinearClassifier:
    """The probe :func:`linear_probe` fits, returned to classify other features (e.g. of corrupted images)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    require_2d("train_x", train_x)
    require_labels("train_y", train_y, train_x, "train_x")
    if num_classes is None:
        num_classes = int(train_y.max().item()) + 1
    require_positive_int("num_classes", num_classes)
    require_label_range("train_y", train_y, num_classes)
    train_x = as_float(train_x.detach())
    train_y = train_y.detach().to(train_x.device).long()
    mean = std = None
    with torch.enable_grad():
        if method == "lbfgs":
            if l2 < 0:
                raise ValueError(f"l2 must be >= 0, got {l2!r}")
            require_positive_int("max_iter", max_iter)
            mean = train_x.mean(dim=0)
            # Constant features would divide by zero; leaving them unscaled keeps them at 0.
            std = train_x.std(dim=0, unbiased=False).clamp_min(1e-8)
            weight, bias = _fit_lbfgs((train_x - mean) / std, train_y, num_classes, l2, max_iter)
        else:
            require_positive_int("epochs", epochs)
            require_positive_int("batch_size", batch_size)
            if not lr > 0:
                raise ValueError(f"lr must be > 0, got {lr!r}")
            weight, bias = _fit_sgd(
                train_x, train_y, num_classes, epochs=epochs, lr=lr, milestones=milestones,
                batch_size=batch_size, weight_decay=weight_decay, seed=seed,
            )
    return LinearClassifier(weight, bias, mean, std)
