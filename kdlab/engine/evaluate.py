"""Evaluation passes shared by the trainer and ``kdlab eval``."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.eval.metrics import ClassificationMeter


@torch.no_grad()
def classify(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    autocast: Optional[torch.autocast] = None,
) -> dict[str, Optional[float]]:
    """top-1 / top-5 (percent) and mean cross-entropy over every batch."""
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
    return meter.compute()


@torch.no_grad()
def embed(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], *, with_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Pooled embeddings (N, D), labels (N,) and optionally logits of every sample, on the CPU."""
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
    return torch.cat(embeddings), torch.cat(labels), (torch.cat(logits) if with_logits else None)
