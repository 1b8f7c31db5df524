"""Feature access: the one way every distillation method reads a network.

A method asks for ``logits``, the pooled ``embedding``, the per-stage feature
maps (``stages``) or the same maps before their last activation
(``preact_stages``, RepDistiller's ``preact=True``). Zoo models implement this
natively through :class:`KDModel`; torchvision and timm models go through
adapters (:mod:`kdlab.models.tv_adapter`, :mod:`kdlab.models.timm_adapter`).
The model never knows which method asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class Features:
    """Everything one forward pass of a network exposes to a distillation method."""

    #: (B, num_classes); for an embedding-only model (``reset_classifier(0)``) it equals ``embedding``
    logits: torch.Tensor
    #: (B, D): pooled, flattened, the classifier's input
    embedding: torch.Tensor
    #: each stage's output (post-activation), (B, C_i, H_i, W_i), shallow to deep
    stages: list[torch.Tensor]
    #: the same stages before the stage's final ReLU; equal to ``stages`` where there is no such activation
    preact_stages: list[torch.Tensor]
    #: (B, num_classes) of a distillation-token head trained apart (a distilled DeiT in training with the
    #: ``deit`` term, ``logits`` then being the class token's head); None for every other network and in eval
    distillation_logits: Optional[torch.Tensor] = None


@runtime_checkable
class FeatureModel(Protocol):
    """What every model returned by :func:`kdlab.models.create_model` provides."""

    num_classes: int
    embedding_dim: int
    stage_channels: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only."""
        ...

    def forward_all(self, x: torch.Tensor) -> Features:
        """Logits, embedding and stages from a single forward pass."""
        ...

    def get_classifier(self) -> nn.Module:
        """The module mapping the embedding to the logits (``nn.Identity`` for embedding models)."""
        ...

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes``; 0 makes an embedding model (logits = embedding)."""
        ...


def make_classifier(embedding_dim: int, num_classes: int, like: nn.Module | None = None) -> nn.Module:
    """A linear classifier, or ``nn.Identity`` for ``num_classes == 0``.

    ``like``: a module whose parameters give the device and dtype, so a classifier
    reset on a model already moved to a GPU or to bf16 lands there too.
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = embedding model), got {num_classes}")
    if num_classes == 0:
        return nn.Identity()
    reference = next(like.parameters(), None) if like is not None else None
    if reference is None:
        return nn.Linear(embedding_dim, num_classes)
    return nn.Linear(embedding_dim, num_classes, device=reference.device, dtype=reference.dtype)


class KDModel(nn.Module):
    """Base of the zoo networks: a backbone, global average pooling and a classifier ``fc``.

    A subclass builds its layers, calls ``super().__init__(...)`` first and
    implements :meth:`forward_backbone`; this class pools, classifies and
    packages the result, so ``forward`` and ``forward_all`` share one pass.
    """

    def __init__(self, num_classes: int, embedding_dim: int, stage_channels: list[int]) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.stage_channels = list(stage_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)  # any input size works, down to 8x8 digits
        self.fc = make_classifier(embedding_dim, num_classes)

    def forward_backbone(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """``(stages, preact_stages, head_map)``: ``head_map`` is the map pooled into the embedding."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_backbone")

    def forward_all(self, x: torch.Tensor) -> Features:
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects images (B, C, H, W), got shape {tuple(x.shape)}")
        stages, preact_stages, head_map = self.forward_backbone(x)
        embedding = torch.flatten(self.pool(head_map), 1)
        return Features(logits=self.fc(embedding), embedding=embedding, stages=stages, preact_stages=preact_stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = make_classifier(self.embedding_dim, num_classes, like=self)
        self.num_classes = num_classes
