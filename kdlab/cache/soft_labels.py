r"""Top-k compression of teacher logits and the distribution rebuilt from it.

A cache in top-k mode keeps, per row, the k largest logits :math:`z_i`
(fp16), their class indices and one *residual logit* (fp32)

.. math::

    r = \log \frac{1}{K - k} \sum_{j \notin \text{top-}k} e^{z_j}

(the log-mean-exp of the other K - k logits). :func:`reconstruct_logits`
returns logits :math:`\hat z` equal to :math:`z_i` on the top-k classes and to
:math:`r` everywhere else. At temperature 1, :math:`\mathrm{softmax}(\hat z)`
gives each top-k class its exact probability and the other classes their
exact total mass, spread evenly (the FKD-style soft label). At a temperature
T != 1 the top-k logits are still exact but the tail is flattened: for T > 1 it
receives slightly more mass than the true tail (power-mean inequality), for
T < 1 slightly less. With k >= K nothing is dropped and the logits are exact
(up to fp16 rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: the class count up to which a cache stores full logits unless told otherwise
FULL_LOGITS_UP_TO = 100
#: k of the top-k mode when the class count is larger and no k is given
DEFAULT_TOP_K = 10


def resolve_top_k(top_k: int | None, num_classes: int) -> int:
    """The k a cache uses: 0 means full logits.

    ``None`` (auto) keeps full logits for up to :data:`FULL_LOGITS_UP_TO`
    classes (exact, and small: 10/100 classes cost 20/200 bytes per sample in
    fp16) and the top :data:`DEFAULT_TOP_K` above that. ``top_k >= num_classes``
    is full logits too.
    """
    if top_k is None:
        return 0 if num_classes <= FULL_LOGITS_UP_TO else DEFAULT_TOP_K
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 = full logits), got {top_k!r}")
    return 0 if top_k >= num_classes else top_k


def compress_logits(logits: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(top-k logits, their class indices, residual logit)`` of (N, K) logits, 0 < k < K.

    Computed in float32 whatever the input dtype; the residual is the
    log-mean-exp of the logits outside the top k (see the module docstring).
    """
    if logits.ndim != 2:
        raise ValueError(f"compress_logits expects (N, K) logits, got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    if not 0 < k < num_classes:
        raise ValueError(f"k must be in [1, {num_classes - 1}] for {num_classes} classes, got {k}")
    logits = logits.float()
    values, indices = logits.topk(k, dim=1)
    rest = logits.scatter(1, indices, float("-inf"))
    residual = torch.logsumexp(rest, dim=1) - torch.log(torch.tensor(float(num_classes - k)))
    return values, indices, residual


def reconstruct_logits(values: Tensor, indices: Tensor, residual: Tensor, num_classes: int) -> Tensor:
    """float32 (N, num_classes) logits: ``values`` at ``indices``, ``residual`` (N,) elsewhere."""
    if values.shape != indices.shape or values.ndim != 2 or residual.shape != values.shape[:1]:
        raise ValueError(
            f"reconstruct_logits: values {tuple(values.shape)} and indices {tuple(indices.shape)} must be (N, k) "
            f"and residual {tuple(residual.shape)} must be (N,)"
        )
    out = residual.float()[:, None].expand(values.shape[0], num_classes).clone()
    return out.scatter_(1, indices.long(), values.float())
