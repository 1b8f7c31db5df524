"""Weighted kNN against a loop-based reference vote."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.eval import knn_accuracy, knn_classify


def naive_knn_predict(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, k: int, temperature: float) -> list[int]:
    """Cosine similarity by loops, sort, take k, sum exp(sim/T) per class, pick the best class."""
    train_rows = train.double().tolist()
    labels = train_labels.tolist()
    preds = []
    for query in test.double().tolist():
        q_norm = math.sqrt(sum(v * v for v in query))
        sims = []
        for j, row in enumerate(train_rows):
            r_norm = math.sqrt(sum(v * v for v in row))
            sims.append((sum(a * b for a, b in zip(query, row)) / (q_norm * r_norm), j))
        sims.sort(reverse=True)
        votes: dict[int, float] = {}
        for sim, j in sims[:k]:
            votes[labels[j]] = votes.get(labels[j], 0.0) + math.exp(sim / temperature)
        best = max(votes.values())
        preds.append(min(c for c, v in votes.items() if v == best))
    return preds


def _data(seed: int, n_train: int = 30, n_test: int = 12, dim: int = 5, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    train = torch.randn(n_train, dim, generator=g)
    labels = torch.randint(0, classes, (n_train,), generator=g)
    test = torch.randn(n_test, dim, generator=g)
    test_labels = torch.randint(0, classes, (n_test,), generator=g)
    return train, labels, test, test_labels


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k,temperature", [(1, 0.07), (5, 0.07), (10, 0.5), (30, 1.0)])
def test_knn_classify_matches_naive(seed: int, k: int, temperature: float) -> None:
    train, labels, test, _ = _data(seed)
    preds = knn_classify(train, labels, test, k=k, temperature=temperature, chunk_size=5)
    assert preds.dtype == torch.int64
    assert preds.tolist() == naive_knn_predict(train, labels, test, k, temperature)


def test_chunk_size_does_not_change_predictions() -> None:
    train, labels, test, _ = _data(3, n_test=17)
    reference = knn_classify(train, labels, test, k=7, chunk_size=1024)
    for chunk in (1, 4, 16):
        assert torch.equal(knn_classify(train, labels, test, k=7, chunk_size=chunk), reference)


def test_knn_accuracy_reuses_neighbours_per_k() -> None:
    train, labels, test, test_labels = _data(4, n_test=20)
    result = knn_accuracy(train, labels, test, test_labels, ks=(1, 5, 10), chunk_size=6)
    assert set(result) == {1, 5, 10}
    for k in (1, 5, 10):
        naive = naive_knn_predict(train, labels, test, k, 0.07)
        expected = 100.0 * sum(p == t for p, t in zip(naive, test_labels.tolist())) / len(naive)
        assert result[k] == pytest.approx(expected)


def test_knn_accuracy_clips_k_to_train_size() -> None:
    train, labels, test, test_labels = _data(5, n_train=15)
    result = knn_accuracy(train, labels, test, test_labels, ks=(200,))
    all_neighbours = knn_accuracy(train, labels, test, test_labels, ks=(15,))
    assert result[200] == all_neighbours[15]


def test_separable_clusters_are_classified_perfectly() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    train_labels = torch.arange(4).repeat_interleave(10)
    test_labels = torch.arange(4).repeat_interleave(5)
    train = centres[train_labels] + 0.3 * torch.randn(40, 4, generator=g)
    test = centres[test_labels] + 0.3 * torch.randn(20, 4, generator=g)
    assert knn_accuracy(train, train_labels, test, test_labels, ks=(1, 5, 10)) == {1: 100.0, 5: 100.0, 10: 100.0}


def test_tiny_temperature_is_nearest_neighbour_without_overflow() -> None:
    train, labels, test, _ = _data(6)
    preds = knn_classify(train, labels, test, k=10, temperature=1e-4)
    assert preds.tolist() == naive_knn_predict(train, labels, test, 1, 1.0)


def test_scale_of_embeddings_is_irrelevant() -> None:
    train, labels, test, _ = _data(7)
    assert torch.equal(knn_classify(train, labels, test, k=5), knn_classify(train * 3.0, labels, test * 0.2, k=5))


def test_knn_errors_name_the_shapes() -> None:
    train, labels, test, test_labels = _data(8, n_train=10)
    with pytest.raises(ValueError, match=r"k=11 .*\(10, 5\)"):
        knn_classify(train, labels, test, k=11)
    with pytest.raises(ValueError, match=r"\(10, 5\) and \(12, 3\)"):
        knn_classify(train, labels, test[:, :3])
    with pytest.raises(ValueError, match=r"train_labels shape \(9,\)"):
        knn_classify(train, labels[:9], test)
    with pytest.raises(ValueError, match=r"test_labels shape \(11,\)"):
        knn_accuracy(train, labels, test, test_labels[:11])
    with pytest.raises(ValueError, match=r"2-D.*\(10,\)"):
        knn_classify(train[:, 0], labels, test)
    with pytest.raises(ValueError, match="temperature"):
        knn_classify(train, labels, test, temperature=0.0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        knn_classify(train, labels, test, num_classes=2)
