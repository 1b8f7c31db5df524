"""Label-based retrieval quality of embeddings: mean average precision and Recall@K.

Every sample queries all the *other* samples, ranked by the cosine similarity of their
embeddings; an item is relevant to a query when it has the query's label. This is the
leave-one-out protocol of the metric-learning benchmarks (Song et al. 2016, "Deep Metric
Learning via Lifted Structured Feature Embedding"; Musgrave et al. 2020, "A Metric Learning
Reality Check"), where the query set and the gallery are the same evaluation split.

Similarities are computed one chunk of queries at a time, so memory stays proportional to
``chunk_size x N`` and the full ``N x N`` similarity matrix is never built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdlab.eval._checks import as_float, normalise_ks as _normalise_ks, require_2d, require_labels, require_positive_int


def _sorted_relevance(
    embeddings: torch.Tensor, labels: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """(stop - start, N - 1) bool: is the item at each rank relevant to query ``start + row``?

    ``embeddings`` are already L2-normalised. The query itself gets similarity -inf so it
    sorts after every other item (similarities are finite) and is then cut off. The sort is
    stable, so among equal similarities the lower row index ranks first.
    """
    queries = torch.arange(start, stop, device=embeddings.device)
    sims = embeddings[start:stop] @ embeddings.T
    sims[torch.arange(stop - start, device=sims.device), queries] = float("-inf")
    order = torch.sort(sims, dim=1, descending=True, stable=True).indices
    del sims
    # Gathering from a bool mask keeps the (chunk, N) intermediates at one byte per entry.
    same_label = labels.unsqueeze(0) == labels[queries].unsqueeze(1)
    return same_label.gather(1, order[:, : embeddings.shape[0] - 1])


@torch.no_grad()
def retrieval_metrics(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Leave-one-out retrieval mAP and Recall@K (percent) of labelled embeddings.

    For a query q with R >= 1 relevant items among the N - 1 others, ranked by decreasing
    cosine similarity, with rel(r) = 1 when the item at rank r is relevant:

    * precision@r = (1 / r) * sum_{i <= r} rel(i)
    * AP(q) = (1 / R) * sum_r rel(r) * precision@r, over the full ranking (r = 1..N-1)
    * mAP = mean of AP(q) over the scored queries
    * Recall@k = percentage of scored queries with at least one relevant item in the top k
      (the metric-learning Recall@K of Song et al. 2016 / Musgrave et al. 2020, i.e. a top-k
      hit rate, *not* the fraction of the R relevant items retrieved).

    A query whose label no other sample shares (R = 0) has neither an AP nor a hit to score:
    it is left out of mAP and of every Recall@k, and ``"queries"`` reports how many queries
    were scored.

    Ties: among equal similarities, the item with the lower row index ranks first (a stable
    sort), so the result is deterministic; exact ties arise from duplicated embeddings.
    All-zero embeddings stay zero after normalisation and have similarity 0 to everything.

    Args:
        embeddings: (N, D) embeddings, N >= 2 (any scale: rows are L2-normalised). Computed
            on their own device, in float32 or wider.
        labels: (N,) integer labels (any integer values; only equality matters).
        ks: the k of each Recall@k; each is clipped to N - 1, the number of candidates.
        chunk_size: queries ranked at once. Peak memory is about
            ``16 x chunk_size x N`` bytes (float32 similarities, their sorted copy and the
            int64 order), e.g. 0.8 GB for the default chunk at N = 50k; lower it if needed.

    Returns:
        ``{"map": percent, "recall@k": percent for each k in ks (keys as requested),
        "queries": number of scored queries}``.

    Raises:
        ValueError: on bad shapes or arguments, non-finite embeddings, or when no query has
            a relevant item (every label is unique), where no metric is defined.
    """
    require_2d("embeddings", embeddings)
    require_labels("labels", labels, embeddings, "embeddings")
    ks = _normalise_ks(ks)
    require_positive_int("chunk_size", chunk_size)
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError(
            f"embeddings must hold at least 2 rows (each query needs another item to rank), "
            f"got shape {tuple(embeddings.shape)}"
        )
    x = as_float(embeddings.detach())
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"embeddings must be finite, got NaN or inf in shape {tuple(x.shape)}")
    x = F.normalize(x, dim=1)
    y = labels.detach().to(x.device)

    candidates = n - 1
    clipped = {k: min(k, candidates) for k in ks}
    ranks = torch.arange(1, candidates + 1, device=x.device, dtype=x.dtype)
    ap_sum = 0.0
    hits = {k: 0 for k in ks}
    scored = 0
    for start in range(0, n, chunk_size):
        relevant = _sorted_relevance(x, y, start, min(start + chunk_size, n))
        num_relevant = relevant.sum(dim=1)
        has_relevant = num_relevant > 0
        relevant, num_relevant = relevant[has_relevant], num_relevant[has_relevant]
        if relevant.shape[0] == 0:
            continue
        scored += relevant.shape[0]
        # Counts in float32 are exact up to 2**24, far above any N this is meant for.
        precision = relevant.cumsum(dim=1, dtype=x.dtype).div_(ranks).mul_(relevant)
        average_precision = precision.sum(dim=1) / num_relevant.to(x.dtype)
        # Sum on the CPU in float64: some devices lack float64, and the sum over all
        # queries is where float32 rounding would accumulate.
        ap_sum += float(average_precision.cpu().double().sum())
        for k, k_eff in clipped.items():
            hits[k] += int(relevant[:, :k_eff].any(dim=1).sum().item())

    if scored == 0:
        raise ValueError(
            f"no query has a relevant item: all {n} labels are distinct, so mAP and Recall@k "
            "are undefined"
        )
    result: dict[str, float] = {"map": 100.0 * ap_sum / scored}
    for k in ks:
        result[f"recall@{k}"] = 100.0 * hits[k] / scored
    result["queries"] = scored
    return result
