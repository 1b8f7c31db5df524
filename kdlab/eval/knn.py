"""Weighted k-nearest-neighbour classification of embeddings (InstDisc / DINO protocol).

Each test embedding votes with its k most cosine-similar training embeddings, each
neighbour weighted by ``exp(similarity / temperature)``; the class with the largest summed
weight wins. Similarities are computed one chunk of test rows at a time so memory stays
at ``chunk_size x N_train`` regardless of the test set size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from kdlab.eval._checks import (
    as_float,
    require_2d,
    require_label_range,
    require_labels,
    require_positive_int,
)


def _validate(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    temperature: float,
    num_classes: int | None,
    chunk_size: int,
) -> int:
    """Check the inputs and return the number of classes."""
    require_2d("train_embeddings", train_embeddings)
    require_2d("test_embeddings", test_embeddings)
    require_labels("train_labels", train_labels, train_embeddings, "train_embeddings")
    if train_embeddings.shape[1] != test_embeddings.shape[1]:
        raise ValueError(
            "train_embeddings and test_embeddings must have the same embedding dim, got shapes "
            f"{tuple(train_embeddings.shape)} and {tuple(test_embeddings.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    require_positive_int("chunk_size", chunk_size)
    if num_classes is None:
        num_classes = int(train_labels.max().item()) + 1
    require_positive_int("num_classes", num_classes)
    require_label_range("train_labels", train_labels, num_classes)
    return num_classes


def _neighbour_chunks(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    k: int,
    chunk_size: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (similarities, neighbour labels), each (chunk, k), sorted by decreasing similarity."""
    train = F.normalize(as_float(train_embeddings.detach()), dim=1)
    labels = train_labels.detach().to(train.device)
    for start in range(0, test_embeddings.shape[0], chunk_size):
        chunk = test_embeddings[start : start + chunk_size].detach().to(train.device)
        chunk = F.normalize(as_float(chunk).to(train.dtype), dim=1)
        sims, idx = (chunk @ train.T).topk(k, dim=1, largest=True, sorted=True)
        yield sims, labels[idx]


def _vote(sims: torch.Tensor, neighbour_labels: torch.Tensor, temperature: float, num_classes: int) -> torch.Tensor:
    """Class predictions from the sorted neighbour similarities and labels of one chunk."""
    # Subtracting each row's best similarity rescales that row's weights by a common
    # positive factor: the argmax is unchanged but exp() can no longer overflow at small T.
    weights = ((sims - sims[:, :1]) / temperature).exp()
    scores = torch.zeros(sims.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    scores.scatter_add_(1, neighbour_labels, weights)
    return scores.argmax(dim=1)


@torch.no_grad()
def knn_classify(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predict a class for every test embedding by weighted kNN vote over the training set.

    Args:
        train_embeddings: (N_train, D) reference embeddings (any scale; they are L2-normalised).
        train_labels: (N_train,) integer labels.
        test_embeddings: (N_test, D) embeddings to classify.
        k: number of neighbours; must be <= N_train.
        temperature: weight sharpness; neighbour weight is ``exp(cos_sim / temperature)``.
        num_classes: defaults to ``max(train_labels) + 1``.
        chunk_size: test rows processed at once (bounds memory to chunk_size x N_train).

    Returns:
        (N_test,) int64 predictions on the device of ``train_embeddings``. Class-score ties go
        to the lowest class index.
    """
    num_classes = _validate(train_embeddings, train_labels, test_embeddings, temperature, num_classes, chunk_size)
    require_positive_int("k", k)
    n_train = train_embeddings.shape[0]
    if k > n_train:
        raise ValueError(
            f"k={k} exceeds the number of training embeddings (train_embeddings shape "
            f"{tuple(train_embeddings.shape)})"
        )
    preds = [
        _vote(sims, labels, temperature, num_classes)
        for sims, labels in _neighbour_chunks(train_embeddings, train_labels, test_embeddings, k, chunk_size)
    ]
    return torch.cat(preds)


@torch.no_grad()
def knn_accuracy(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Weighted-kNN top-1 accuracy (percent) for several neighbourhood sizes at once.

    The top-max(ks) neighbours are found once per chunk; every smaller k reuses its sorted
    prefix. Each k is clipped to N_train (so ``ks=(200,)`` on 50 training points uses all 50);
    the returned keys are the requested ks.
    """
    num_classes = _validate(train_embeddings, train_labels, test_embeddings, temperature, num_classes, chunk_size)
    require_labels("test_labels", test_labels, test_embeddings, "test_embeddings")
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must contain at least one k, got ()")
    for k in ks:
        require_positive_int(f"k in ks={ks}", k)
    n_train = train_embeddings.shape[0]
    effective = {k: min(k, n_train) for k in ks}
    max_k = max(effective.values())
    targets = test_labels.detach().to(train_embeddings.device)
    correct = {k: 0 for k in ks}
    start = 0
    for sims, labels in _neighbour_chunks(train_embeddings, train_labels, test_embeddings, max_k, chunk_size):
        chunk_targets = targets[start : start + sims.shape[0]]
        start += sims.shape[0]
        for k, k_eff in effective.items():
            preds = _vote(sims[:, :k_eff], labels[:, :k_eff], temperature, num_classes)
            correct[k] += int((preds == chunk_targets).sum().item())
    n_test = test_embeddings.shape[0]
    return {k: 100.0 * correct[k] / n_test for k in ks}
