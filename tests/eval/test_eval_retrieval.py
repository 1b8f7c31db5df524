"""Leave-one-out retrieval mAP / Recall@K against a naive float64 reference, ties and checks."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.eval.retrieval import retrieval_metrics


def _naive_retrieval(embeddings: torch.Tensor, labels: torch.Tensor, ks) -> dict[str, float]:
    """Per-query Python loop in float64: sort the others by (-cosine, index), score by definition."""
    rows = [[float(v) for v in row] for row in embeddings.double()]
    norms = [math.sqrt(sum(v * v for v in row)) for row in rows]
    unit = [[v / norm for v in row] for row, norm in zip(rows, norms)]
    targets = [int(v) for v in labels]
    n = len(rows)
    ap_values, hit_counts = [], {k: 0 for k in ks}
    for q in range(n):
        others = [j for j in range(n) if j != q]
        sims = {j: sum(a * b for a, b in zip(unit[q], unit[j])) for j in others}
        ranking = sorted(others, key=lambda j: (-sims[j], j))
        relevant = [targets[j] == targets[q] for j in ranking]
        total = sum(relevant)
        if total == 0:
            continue
        precisions, found = [], 0
        for rank, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                found += 1
                precisions.append(found / rank)
        ap_values.append(sum(precisions) / total)
        for k in ks:
            hit_counts[k] += any(relevant[:k])
    scored = len(ap_values)
    result = {"map": 100.0 * sum(ap_values) / scored}
    result.update({f"recall@{k}": 100.0 * hit_counts[k] / scored for k in ks})
    result["queries"] = scored
    return result


def _random_with_singleton_and_duplicates(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Five noisy classes, one class of a single sample, and duplicated rows (exact ties)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (50,), generator=g)
    centres = torch.randn(5, 6, generator=g)
    x = centres[labels] + 0.9 * torch.randn(50, 6, generator=g)
    # Duplicates with the same label and with a different label: their similarity to any
    # query ties exactly, so only the index tie-break decides their order.
    x = torch.cat([x, x[[3, 3, 10]], torch.randn(1, 6, generator=g)])
    labels = torch.cat([labels, labels[[3]], (labels[[3]] + 1) % 5, labels[[10]], torch.tensor([7])])
    return x, labels


def test_matches_naive_reference_with_singleton_class_and_ties() -> None:
    x, labels = _random_with_singleton_and_duplicates()
    ks = (1, 2, 5, 10, 100)  # 100 > N - 1: clipped to every candidate
    got = retrieval_metrics(x, labels, ks=ks, chunk_size=16)
    want = _naive_retrieval(x, labels, ks)
    assert set(got) == {"map", "recall@1", "recall@2", "recall@5", "recall@10", "recall@100", "queries"}
    assert got["queries"] == want["queries"] == x.shape[0] - 1  # the label-7 sample is unscored
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key
    assert got["recall@100"] == 100.0


def test_ties_break_by_lower_index_hand_computed() -> None:
    # Rows 1-3 are the same direction; row 1 (label 1) is the only sample of its class.
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 0])
    got = retrieval_metrics(x, labels, ks=(1, 2))
    # Queries 0, 2 and 3 each rank the irrelevant row 1 first (lowest index among their
    # tied neighbours), then two relevant rows: AP = (1/2) * (1/2 + 2/3) = 7/12.
    assert got["queries"] == 3
    assert got["map"] == pytest.approx(100.0 * 7 / 12)
    assert got["recall@1"] == 0.0
    # One of the two relevant items is in the top 2: a hit (hit rate, not 50% of items).
    assert got["recall@2"] == 100.0


def test_perfect_clustering_scores_100() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(6)
    x = torch.eye(4)[labels] + 0.01 * torch.randn(24, 4, generator=g)
    got = retrieval_metrics(x * 3.0, labels, ks=(1, 5, 10))
    assert got == {"map": 100.0, "recall@1": 100.0, "recall@5": 100.0, "recall@10": 100.0, "queries": 24}


def test_recall_is_monotone_in_k_and_reaches_100() -> None:
    g = torch.Generator().manual_seed(2)
    x, labels = torch.randn(40, 5, generator=g), torch.randint(0, 6, (40,), generator=g)
    ks = (1, 2, 3, 5, 8, 13, 21, 39)
    got = retrieval_metrics(x, labels, ks=ks)
    recalls = [got[f"recall@{k}"] for k in ks]
    assert recalls == sorted(recalls)
    assert recalls[0] < 100.0 and recalls[-1] == 100.0
    assert 0.0 < got["map"] < 100.0


def test_chunk_size_does_not_change_the_result() -> None:
    x, labels = _random_with_singleton_and_duplicates(seed=3)
    results = [retrieval_metrics(x, labels, ks=(1, 5), chunk_size=c) for c in (1, 7, 4096)]
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for key in results[0]:
            assert other[key] == pytest.approx(results[0][key], abs=1e-6), key


def test_scale_and_dtype_do_not_matter() -> None:
    x, labels = _random_with_singleton_and_duplicates(seed=4)
    base = retrieval_metrics(x, labels)
    # Positive rescaling leaves cosine similarity unchanged; float64 input is computed in
    # float64 and agrees to rounding; integer labels of another dtype are fine.
    scaled = retrieval_metrics(x.double() * 7.5, labels.int())
    for key in base:
        assert scaled[key] == pytest.approx(base[key], abs=1e-4), key


def test_argument_checks() -> None:
    x, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \(N, D\), got shape \(6,\)"):
        retrieval_metrics(x[:, 0], labels)
    with pytest.raises(ValueError, match=r"labels shape \(5,\) and embeddings shape \(6, 3\)"):
        retrieval_metrics(x, labels[:5])
    with pytest.raises(ValueError, match="integer class indices"):
        retrieval_metrics(x, labels.float())
    with pytest.raises(ValueError, match="ks must contain"):
        retrieval_metrics(x, labels, ks=())
    with pytest.raises(ValueError, match="k in ks"):
        retrieval_metrics(x, labels, ks=(1, 0))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(x, labels, chunk_size=0)
    with pytest.raises(ValueError, match=r"at least 2 rows.*\(1, 3\)"):
        retrieval_metrics(x[:1], labels[:1])
    with pytest.raises(ValueError, match="no query has a relevant item"):
        retrieval_metrics(x, torch.arange(6))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        retrieval_metrics(bad, labels)
