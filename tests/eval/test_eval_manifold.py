"""Representation similarity measures against explicit loop references and known invariances."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.eval import knn_overlap, linear_cka, manifold_report, mean_dimension_cosine, mean_sample_cosine


def naive_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear kernels, all sums explicit."""
    x, y = a.double().tolist(), b.double().tolist()
    n = len(x)

    def gram(rows: list[list[float]]) -> list[list[float]]:
        return [[sum(p * q for p, q in zip(rows[i], rows[j])) for j in range(n)] for i in range(n)]

    def double_centre(k: list[list[float]]) -> list[list[float]]:
        row_mean = [sum(k[i]) / n for i in range(n)]
        col_mean = [sum(k[i][j] for i in range(n)) / n for j in range(n)]
        total = sum(row_mean) / n
        return [[k[i][j] - row_mean[i] - col_mean[j] + total for j in range(n)] for i in range(n)]

    def hsic(kc: list[list[float]], lc: list[list[float]]) -> float:
        return sum(kc[i][j] * lc[i][j] for i in range(n) for j in range(n)) / (n - 1) ** 2

    kc, lc = double_centre(gram(x)), double_centre(gram(y))
    return hsic(kc, lc) / math.sqrt(hsic(kc, kc) * hsic(lc, lc))


def naive_neighbours(x: torch.Tensor, i: int, k: int) -> set[int]:
    rows = x.double().tolist()

    def cos(u: list[float], v: list[float]) -> float:
        return sum(p * q for p, q in zip(u, v)) / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v))

    ranked = sorted((j for j in range(len(rows)) if j != i), key=lambda j: cos(rows[i], rows[j]), reverse=True)
    return set(ranked[:k])


def naive_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    n = a.shape[0]
    return sum(len(naive_neighbours(a, i, k) & naive_neighbours(b, i, k)) / k for i in range(n)) / n


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n,d1,d2", [(12, 3, 5), (6, 20, 9), (10, 4, 4)])
def test_cka_matches_explicit_hsic(n: int, d1: int, d2: int) -> None:
    # (6, 20, 9) exercises the Gram-matrix path (N^2 < D1*D2), the others the feature path.
    a = _randn(0, n, d1)
    b = a[:, :1].repeat(1, d2) * 0.5 + _randn(1, n, d2)
    assert linear_cka(a, b) == pytest.approx(naive_cka(a, b), abs=1e-10)


def test_cka_known_cases() -> None:
    a = _randn(2, 30, 6)
    q, _ = torch.linalg.qr(_randn(3, 6, 6).double())
    assert linear_cka(a, a) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(a, a.double() @ q) == pytest.approx(1.0, abs=1e-10)
    b = _randn(4, 30, 9)
    base = linear_cka(a, b)
    assert 0.0 <= base <= 1.0
    assert linear_cka(a.double() @ q * 7.5, b.double() * 0.01) == pytest.approx(base, abs=1e-10)
    # Column means are removed, so a constant shift changes nothing either.
    assert linear_cka(a + 3.0, b) == pytest.approx(base, abs=1e-6)


def test_cka_errors() -> None:
    with pytest.raises(ValueError, match=r"\(5, 2\) and \(4, 2\)"):
        linear_cka(torch.randn(5, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="zero variance"):
        linear_cka(torch.ones(5, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"2-D.*\(5,\)"):
        linear_cka(torch.randn(5), torch.randn(5, 2))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_overlap_matches_explicit_sets(k: int) -> None:
    a = _randn(5, 14, 4)
    b = a[:, :3] + 0.8 * _randn(6, 14, 3)
    assert knn_overlap(a, b, k=k, chunk_size=4) == pytest.approx(naive_overlap(a, b, k))


def test_knn_overlap_known_cases() -> None:
    a = _randn(7, 25, 5)
    assert knn_overlap(a, a, k=5) == 1.0
    assert knn_overlap(a, a * 4.0, k=5) == 1.0
    row_scales = torch.rand(25, 1, generator=torch.Generator().manual_seed(8)) + 0.5
    assert knn_overlap(a, a * row_scales, k=5) == 1.0
    unrelated = knn_overlap(a, _randn(9, 25, 5), k=5)
    assert 0.0 <= unrelated < 1.0


def test_knn_overlap_chunking_is_invisible() -> None:
    a, b = _randn(10, 19, 3), _randn(11, 19, 6)
    reference = knn_overlap(a, b, k=4, chunk_size=1024)
    assert all(knn_overlap(a, b, k=4, chunk_size=c) == reference for c in (1, 5, 19))


def test_knn_overlap_errors() -> None:
    with pytest.raises(ValueError, match=r"k=5 .*\(5, 3\)"):
        knn_overlap(torch.randn(5, 3), torch.randn(5, 2), k=5)
    with pytest.raises(ValueError, match=r"\(6, 3\) and \(5, 3\)"):
        knn_overlap(torch.randn(6, 3), torch.randn(5, 3), k=2)


def test_cosine_measures_match_loops() -> None:
    a, b = _randn(12, 9, 4), _randn(13, 9, 4)
    rows_a, rows_b = a.double().tolist(), b.double().tolist()

    def cos(u: list[float], v: list[float]) -> float:
        return sum(p * q for p, q in zip(u, v)) / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v))

    per_sample = [cos(rows_a[i], rows_b[i]) for i in range(9)]
    per_dim = [cos([r[j] for r in rows_a], [r[j] for r in rows_b]) for j in range(4)]
    assert mean_sample_cosine(a, b) == pytest.approx(sum(per_sample) / 9, abs=1e-12)
    assert mean_dimension_cosine(a, b) == pytest.approx(sum(per_dim) / 4, abs=1e-12)
    assert mean_sample_cosine(a, a * 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\(9, 4\) and \(9, 3\)"):
        mean_sample_cosine(a, b[:, :3])
    with pytest.raises(ValueError, match=r"\(9, 4\) and \(9, 3\)"):
        mean_dimension_cosine(a, b[:, :3])


def test_manifold_report() -> None:
    teacher = _randn(14, 20, 6)
    same_dim = manifold_report(teacher, teacher * 2, k=3)
    assert set(same_dim) == {"cka", "knn_overlap", "sample_cosine", "dimension_cosine"}
    assert same_dim["cka"] == pytest.approx(1.0)
    assert same_dim["knn_overlap"] == 1.0
    assert same_dim["sample_cosine"] == pytest.approx(1.0)
    assert same_dim["dimension_cosine"] == pytest.approx(1.0)
    narrower = manifold_report(teacher, teacher[:, :4], k=3)
    assert narrower["sample_cosine"] is None and narrower["dimension_cosine"] is None
    assert 0.0 < narrower["cka"] < 1.0
    with pytest.raises(ValueError, match=r"teacher and student.*\(20, 6\) and \(19, 6\)"):
        manifold_report(teacher, teacher[:19])
