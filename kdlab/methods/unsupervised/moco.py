"""Turn a MoCo (v1/v2) training checkpoint into a plain torchvision ResNet state_dict.

MoCo saves ``{"epoch", "arch", "state_dict", "optimizer"}`` where the state
dict holds the query encoder as ``module.encoder_q.*`` (``encoder_q.*`` without
DDP), the momentum encoder ``encoder_k.*`` and the ``queue``. Its ``fc`` is the
contrastive projection (a Linear in v1, Linear-ReLU-Linear in v2), not a
classifier. The converted file keeps the query encoder's backbone, drops that
projection, and (by default) adds a zero placeholder classifier ``fc`` so the
file loads strictly into ``tv:resnet50`` with 1000 classes; the teacher is then
used with ``teacher.embedding_only: true``, which removes the classifier.

    python -c "from kdlab.methods.unsupervised import convert_moco_checkpoint; \
convert_moco_checkpoint('moco_v2_800ep_pretrain.pth.tar', 'teachers/mocov2_r50.pt')"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch

PathLike = Union[str, os.PathLike]

#: where MoCo keeps the query encoder, with and without the DDP wrapper
MOCO_ENCODER_PREFIXES = ("module.encoder_q.", "encoder_q.")
#: the encoder's projection head inside the prefix (dropped)
PROJECTION_PREFIX = "fc."


def _moco_state_dict(obj: object, path: PathLike) -> dict[str, torch.Tensor]:
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: expected a MoCo checkpoint dict with a 'state_dict' entry, got {type(obj).__name__}")
    return state


def _detect_prefix(keys: list[str], path: PathLike) -> str:
    for prefix in MOCO_ENCODER_PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            return prefix
    shown = ", ".join(keys[:5])
    raise ValueError(
        f"{path} holds no MoCo query encoder: no key starts with {' or '.join(MOCO_ENCODER_PREFIXES)} "
        f"(first keys: {shown}); pass prefix= for another layout"
    )


def _embedding_width(projection: dict[str, torch.Tensor], embedding_dim: Optional[int], path: PathLike) -> int:
    """The backbone's output width: the input width of the projection's first linear layer."""
    if embedding_dim is not None:
        return embedding_dim
    # v1: fc.weight (128, 2048); v2: fc.0.weight (2048, 2048), fc.2.weight (128, 2048)
    for key in ("weight", "0.weight"):
        weight = projection.get(key)
        if weight is not None and weight.dim() == 2:
            return int(weight.shape[1])
    raise ValueError(
        f"{path}: cannot infer the embedding width (no projection head fc.weight / fc.0.weight found); "
        "pass embedding_dim= (2048 for ResNet-50) or num_classes=0"
    )


def convert_moco_checkpoint(
    src: PathLike,
    dst: PathLike,
    *,
    num_classes: int = 1000,
    prefix: Optional[str] = None,
    embedding_dim: Optional[int] = None,
    unsafe: bool = False,
) -> Path:
    """Write the query encoder of the MoCo checkpoint ``src`` as a torchvision state_dict at ``dst``.

    Args:
        src: MoCo checkpoint (``.pth.tar``), read with ``weights_only=True`` unless ``unsafe``.
        dst: output file (written atomically; parent folders created).
        num_classes: rows of the zero placeholder classifier ``fc`` (so the file loads strictly into
            a torchvision model with that many classes); 0 writes no classifier at all.
        prefix: the encoder's key prefix; default: ``module.encoder_q.`` or ``encoder_q.``, whichever is there.
        embedding_dim: the classifier's input width; default: inferred from the dropped projection head.
        unsafe: allow full unpickling of ``src`` (trusted files only).

    Returns:
        ``dst`` as a Path.
    """
    from kdlab.checkpoint_io import atomic_save
    from kdlab.models.checkpoint import read_checkpoint_file

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    state = _moco_state_dict(read_checkpoint_file(src, unsafe=unsafe), src)
    keys = list(state)
    prefix = prefix if prefix is not None else _detect_prefix(keys, src)
    encoder = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not encoder:
        raise ValueError(f"{src}: no key starts with prefix {prefix!r}")
    projection = {k[len(PROJECTION_PREFIX) :]: v for k, v in encoder.items() if k.startswith(PROJECTION_PREFIX)}
    backbone = {k: v.clone() for k, v in encoder.items() if not k.startswith(PROJECTION_PREFIX)}
    if num_classes > 0:
        width = _embedding_width(projection, embedding_dim, src)
        reference = next(iter(backbone.values()))
        backbone["fc.weight"] = torch.zeros(num_classes, width, dtype=reference.dtype)
        backbone["fc.bias"] = torch.zeros(num_classes, dtype=reference.dtype)
    return atomic_save(backbone, dst)
