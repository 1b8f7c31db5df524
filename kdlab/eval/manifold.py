"""Compare two embeddings of the same samples (e.g. teacher vs student representations).

* :func:`linear_cka` - linear Centered Kernel Alignment (Kornblith et al., 2019); invariant
  to orthogonal transforms and isotropic scaling, works across different widths.
* :func:`knn_overlap` - how much of each sample's cosine neighbourhood is preserved.
* :func:`mean_sample_cosine` / :func:`mean_dimension_cosine` - direct alignment, only
  meaningful when both embeddings live in the same space (same dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.eval._checks import as_float, require_2d, require_positive_int, require_same_rows


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b")) -> None:
    require_2d(names[0], a)
    require_2d(names[1], b)
    require_same_rows(names[0], a, names[1], b)


def _check_same_shape(a: torch.Tensor, b: torch.Tensor) -> None:
    _check_pair(a, b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (same dim), got {tuple(a.shape)} and {tuple(b.shape)}")


def _cross_frobenius_sq(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||y^T x||_F^2, computed in whichever space is smaller.

    ||Y^T X||_F^2 = trace(X X^T Y Y^T), so with many features and few samples the (N, N)
    Gram matrices are cheaper than the (D2, D1) cross-covariance.
    """
    n, d1 = x.shape
    d2 = y.shape[1]
    if n * n < d1 * d2:
        return ((x @ x.T) * (y @ y.T)).sum()
    return (y.T @ x).pow(2).sum()


@torch.no_grad()
def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA between (N, D1) and (N, D2) embeddings of the same N samples.

    Columns are mean-centred, then ``||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F)`` in float64.
    Returns a value in [0, 1]; 1 means identical up to rotation and isotropic scaling.
    """
    _check_pair(a, b)
    if a.shape[0] < 2:
        raise ValueError(f"linear_cka needs at least 2 samples, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.detach().to(torch.float64)
    y = b.detach().to(device=x.device, dtype=torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    cross = _cross_frobenius_sq(x, y)
    norm_x = _cross_frobenius_sq(x, x).sqrt()
    norm_y = _cross_frobenius_sq(y, y).sqrt()
    if norm_x == 0 or norm_y == 0:
        which = "a" if norm_x == 0 else "b"
        raise ValueError(
            f"linear_cka is undefined: {which} has zero variance after centring "
            f"(shapes {tuple(a.shape)} and {tuple(b.shape)})"
        )
    return float(cross / (norm_x * norm_y))


def _neighbour_indices(x: torch.Tensor, rows: slice, k: int) -> torch.Tensor:
    """Indices of the k most cosine-similar rows of (normalised) ``x`` for ``x[rows]``, self excluded."""
    sims = x[rows] @ x.T
    own = torch.arange(rows.start, rows.start + sims.shape[0], device=x.device)
    # Exclude each sample by index (not by similarity) so duplicates still count as neighbours.
    sims[torch.arange(sims.shape[0], device=x.device), own] = float("-inf")
    return sims.topk(k, dim=1, largest=True, sorted=False).indices


@torch.no_grad()
def knn_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10, chunk_size: int = 1024) -> float:
    """Mean fraction of each sample's k nearest cosine neighbours shared between ``a`` and ``b``.

    For sample i, take its k nearest neighbours (excluding i itself) in ``a`` and in ``b``;
    the score is ``|N_a(i) & N_b(i)| / k``, averaged over samples. Rows are processed in
    chunks of ``chunk_size`` so memory stays at ``chunk_size x N``. Requires k < N.
    """
    _check_pair(a, b)
    require_positive_int("k", k)
    require_positive_int("chunk_size", chunk_size)
    n = a.shape[0]
    if k >= n:
        raise ValueError(
            f"k={k} must be smaller than the number of samples (self is excluded), "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    x = F.normalize(as_float(a.detach()), dim=1)
    y = F.normalize(as_float(b.detach()).to(x.device), dim=1)
    shared = 0
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        idx_a = _neighbour_indices(x, rows, k)
        idx_b = _neighbour_indices(y, rows, k)
        in_a = torch.zeros(idx_a.shape[0], n, dtype=torch.bool, device=x.device)
        in_a.scatter_(1, idx_a, True)
        shared += int(in_a.gather(1, idx_b).sum().item())
    return shared / (n * k)


@torch.no_grad()
def mean_sample_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over samples of cos(a_i, b_i); needs both embeddings in the same (N, D) space."""
    _check_same_shape(a, b)
    x = a.detach().to(torch.float64)
    y = b.detach().to(device=x.device, dtype=torch.float64)
    return float(F.cosine_similarity(x, y, dim=1).mean())


@torch.no_grad()
def mean_dimension_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over dimensions of the cosine between column j of ``a`` and of ``b`` (no centring).

    Measures whether each coordinate carries the same per-sample pattern in both embeddings.
    """
    _check_same_shape(a, b)
    x = a.detach().to(torch.float64)
    y = b.detach().to(device=x.device, dtype=torch.float64)
    return float(F.cosine_similarity(x, y, dim=0).mean())


def manifold_report(teacher: torch.Tensor, student: torch.Tensor, k: int = 10) -> dict[str, float | None]:
    """All manifold similarity measures between teacher and student embeddings.

    Returns:
        ``{"cka", "knn_overlap", "sample_cosine", "dimension_cosine"}``; the two cosine
        measures are None when the embedding dims differ (they need a shared space).
    """
    _check_pair(teacher, student, names=("teacher", "student"))
    same_dim = teacher.shape[1] == student.shape[1]
    return {
        "cka": linear_cka(teacher, student),
        "knn_overlap": knn_overlap(teacher, student, k=k),
        "sample_cosine": mean_sample_cosine(teacher, student) if same_dim else None,
        "dimension_cosine": mean_dimension_cosine(teacher, student) if same_dim else None,
    }
