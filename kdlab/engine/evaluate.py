"""Evaluation passes shared by the trainer and ``kdlab eval``."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.engine import distributed
from kdlab.eval.metrics import ClassificationMeter


@torch.no_grad()
def classify(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    autocast: Optional[torch.autocast] = None,
    reduce_across_ranks: bool = False,
) -> dict[str, Optional[float]]:
    """top-1 / top-5 (percent) and mean cross-entropy over every batch.

    ``reduce_across_ranks``: ``batches`` is this rank's shard of a split; the exact
    counts of every rank are summed (DDP), so each rank returns the whole split's result.
    """
    was_training = model.training
    model.eval()
    meter = ClassificationMeter(ks=(1, 5))
    try:
        for batch in batches:
            images = batch["image"]
            if images.dim() == 5:
                images = images[:, 0]
            if autocast is not None:
                with autocast:
                    logits = model(images)
            else:
                logits = model(images)
            logits = logits.float()
            meter.update(logits, batch["target"], loss=F.cross_entropy(logits, batch["target"], reduction="none"))
    finally:
        model.train(was_training)
    if reduce_across_ranks and distributed.is_distributed():
        state = meter.state()
        meter.load_state({key: distributed.all_reduce_sum(value) for key, value in state.items()})
    return meter.compute()


@torch.no_grad()
def embed(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    with_logits: bool = False,
    gather_across_ranks: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Pooled embeddings (N, D), labels (N,) and optionally logits of every sample, on the CPU.

    ``gather_across_ranks``: ``batches`` is this rank's shard; every rank gets the rows of
    all shards (grouped by rank, so not in split order; rows and labels stay paired).
    """
    was_training = model.training
    model.eval()
    embeddings, labels, logits = [], [], []
    try:
        for batch in batches:
            images = batch["image"]
            if images.dim() == 5:
                images = images[:, 0]
            features = model.forward_all(images)
            embeddings.append(features.embedding.float().cpu())
            labels.append(batch["target"].cpu())
            if with_logits:
                logits.append(features.logits.float().cpu())
    finally:
        model.train(was_training)
    outputs = (torch.cat(embeddings), torch.cat(labels), (torch.cat(logits) if with_logits else None))
    if gather_across_ranks and distributed.is_distributed():
        return tuple(None if t is None else distributed.all_gather_rows(t) for t in outputs)  # type: ignore[return-value]
    return outputs
