"""Linear transfer of a frozen embedding to another dataset (``kdlab eval --transfer SPEC``).

A data spec names any dataset kdlab reads: ``NAME[:ROOT][,key=value...]`` where NAME is a
``data.name`` (digits, cifar10, cifar100, imagefolder, synthetic), ROOT its ``data.root`` and the
options further ``data.*`` keys of that dataset (``image_size=64``, ``subset=5000``,
``on_corrupt=skip``). Examples: ``digits``, ``cifar100:data/cifar100``,
``imagefolder:data/pets.zip,image_size=96``.

The spec's images are read at the spec's own resolution and normalisation (its ``data.*``),
then brought to the network's input (resized, channels matched, the network's normalisation;
:mod:`kdlab.engine.input_adapt`). The protocol (:func:`kdlab.eval.linear_transfer`):
embeddings of the spec's training split, a stratified validation part held out of it, and its
test split; L2 weight chosen on validation, refit on train + validation, top-1 on test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from kdlab.config import ConfigError
from kdlab.config.loader import apply_overrides, from_dict
from kdlab.config.schema import DataConfig
from kdlab.engine.input_adapt import InputSpec, to_input, to_unit

#: the fraction of each class of the spec's training split held out to choose the L2 weight (30%, as the
#: ssl-transfer code the CoSS repository runs holds out for datasets without a validation split)
VALIDATION_FRACTION = 0.3
#: data.* keys of a spec's dataset that a spec may not set (they belong to training, not to reading)
_TRAINING_ONLY = ("batch_size", "sampler", "knn_index", "views", "augment", "label_noise", "per_class")


def parse_data_spec(spec: str, like: DataConfig) -> DataConfig:
    """The DataConfig a data spec names; operational keys (cache folder, workers, eval batch) from ``like``."""
    text = spec.strip()
    if not text:
        raise ConfigError("an empty data spec (expected NAME[:ROOT][,key=value...], e.g. digits)")
    head, *options = [part.strip() for part in text.split(",")]
    name, _, root = head.partition(":")
    raw: dict[str, Any] = {"name": name.strip()}
    if root:
        raw["root"] = root
    for option in options:
        key = option.split("=", 1)[0].strip()
        if "=" not in option or not key:
            raise ConfigError(f"data spec {spec!r}: option {option!r} must look like key=value (a data.* key)")
        if key in _TRAINING_ONLY or key in ("name", "root"):
            raise ConfigError(f"data spec {spec!r}: data.{key} cannot be set in a data spec")
        raw = apply_overrides(raw, [option])
    raw.setdefault("cache_dir", like.cache_dir)
    raw.setdefault("num_workers", like.num_workers)
    raw.setdefault("eval_batch_size", like.eval_batch_size)
    raw["augment"] = "none"
    try:
        return from_dict({"data": raw}).data
    except ConfigError as err:
        raise ConfigError(f"data spec {spec!r}: {err}") from None


@torch.no_grad()
def embed_stream(network: nn.Module, stream: Any, stream_mean: Any, stream_std: Any,
                 network_input: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled embeddings (N, D) and labels (N,) of a stream's images fed to ``network`` as it expects them."""
    was_training = network.training
    network.eval()
    embeddings, labels = [], []
    try:
        for batch in stream:
            images = batch["image"][:, 0] if batch["image"].dim() == 5 else batch["image"]
            unit = to_unit(images, stream_mean, stream_std)
            features = network.forward_all(to_input(unit, network_input))
            embeddings.append(features.embedding.float().cpu())
            labels.append(batch["target"].cpu())
    finally:
        network.train(was_training)
    return torch.cat(embeddings), torch.cat(labels)


def transfer_accuracy(network: nn.Module, network_input: InputSpec, spec: str, like: DataConfig, *,
                      seed: int, device: torch.device) -> dict[str, Any]:
    """The frozen-embedding linear transfer of ``network`` to the dataset ``spec`` names.

    Returns ``{"top1", "top5", "l2", "val_top1", "train", "val", "test", "classes"}`` (percent
    for accuracies; sample counts of the three parts).
    """
    from kdlab.data import build_data
    from kdlab.eval import linear_transfer, split_validation

    data_cfg = dataclasses.replace(parse_data_spec(spec, like), sampler="random", batch_size=1)
    bundle = build_data(data_cfg, seed=seed, device=device)
    fit_x, fit_y = embed_stream(network, bundle.train_eval, bundle.mean, bundle.std, network_input)
    test_x, test_y = embed_stream(network, bundle.eval, bundle.mean, bundle.std, network_input)
    train_idx, val_idx = split_validation(fit_y, VALIDATION_FRACTION, seed=seed)
    result = linear_transfer(
        fit_x[train_idx], fit_y[train_idx], fit_x[val_idx], fit_y[val_idx], test_x, test_y,
        num_classes=bundle.num_classes,
    )
    return {"top1": result["top1"], "top5": result["top5"], "l2": result["l2"], "val_top1": result["val_top1"],
            "train": int(train_idx.numel()), "val": int(val_idx.numel()), "test": int(test_y.numel()),
            "classes": int(bundle.num_classes)}
