"""Common part of the torchvision and timm feature adapters.

An adapter holds the unmodified library network as its attribute ``model``
(so its state_dict is the library's with a ``model.`` prefix, which
:func:`kdlab.models.checkpoint.load_checkpoint` adds or strips as needed) and
implements :class:`kdlab.models.features.FeatureModel` around it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdlab.models.features import Features


def primary_output(output: Any) -> torch.Tensor:
    """The logits of a library forward that may return extras (GoogLeNet/Inception aux heads in training)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ValueError(f"cannot find the logits in a model output of type {type(output).__name__}")


def module_name_of(root: nn.Module, target: nn.Module) -> str | None:
    """Qualified name of ``target`` inside ``root`` (by identity), or None."""
    for name, module in root.named_modules():
        if module is target:
            return name
    return None


class LibraryFeatureModel(nn.Module):
    """Base adapter: logits via the library forward; stage channels from a lazy dry run.

    Subclasses implement :meth:`forward_all`, :meth:`get_classifier` and
    :meth:`reset_classifier`, and set ``num_classes`` and ``embedding_dim``.
    """

    num_classes: int
    embedding_dim: int

    def __init__(self, model: nn.Module, probe_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.model = model
        #: (C, H, W) of the dry-run input that measures the stages
        self.probe_shape = probe_shape
        self._stage_channels: list[int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return primary_output(self.model(x))

    def forward_all(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    @property
    def stage_channels(self) -> list[int]:
        """Channels of each stage, measured once by a dry run in eval mode without gradients."""
        if self._stage_channels is None:
            features = self.probe()
            self._stage_channels = [int(stage.shape[1]) for stage in features.stages]
        return list(self._stage_channels)

    def probe(self) -> Features:
        """``forward_all`` on one zero image of ``probe_shape``, on the model's device and dtype."""
        reference = next(self.model.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.forward_all(torch.zeros(1, *self.probe_shape, device=device, dtype=dtype))
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"
