"""Loading model weights from the checkpoint formats found in the wild.

Read safely (``torch.load(..., weights_only=True)``; full unpickling only when
the user opts in with ``unsafe=True`` / ``--unsafe-load``), then converted at
load, never special-cased elsewhere:

- kdlab's own training checkpoint: ``{"model": state_dict, "epoch": ..., "config": ..., ...}``
- a plain state_dict, as a torch file (``.pth``, ``.pt``, ``.bin``) or a ``.safetensors`` file (timm's
  and Hugging Face's ``model.safetensors``; safe by construction: it holds tensors only)
- ``{"state_dict": ...}`` (e.g. akamaster's CIFAR ResNets, with ``best_prec1``), ``{"net": ...}``,
  ``{"model_state_dict": ...}``
- keys prefixed by ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (``torch.compile``)
- a plain torchvision/timm state_dict into kdlab's adapter (which holds the library model as ``model``)
- a classifier saved as ``linear``/``classifier``/``head`` where the model calls it ``fc`` (and so on)
- the KD literature's CIFAR model code (RepDistiller/CRD, mdistiller/DKD/CKD, SSKD): its module names
  are renamed to the zoo's, recognised from the keys (:mod:`kdlab.models.literature_keys`)

A checkpoint that does not fit the architecture raises
:class:`CheckpointMismatchError` naming the file, the missing and unexpected
keys and the shape mismatches, before any weight is changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab import checkpoint_io as _io
from kdlab.models.literature_keys import KeyNames, rename_literature_keys, unwrap_sskd

PathLike = str | os.PathLike[str]

#: keys under which known formats nest the state_dict, in order of preference
STATE_DICT_KEYS = ("model", "state_dict", "net", "model_state_dict")
#: prefixes added by wrappers around the model (DataParallel/DDP, torch.compile)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: the attribute holding the library model inside kdlab's torchvision/timm adapters
ADAPTER_PREFIX = "model."
#: names other code bases give the final linear layer
CLASSIFIER_ALIASES = ("linear", "fc", "classifier", "head")
#: how many keys an error message lists per category
MAX_LISTED = 10


class CheckpointMismatchError(ValueError):
    """The checkpoint's weights do not fit the model (missing/unexpected keys, shape mismatches)."""


UnsafeCheckpointError = _io.UnsafeCheckpointError  # a real torch file with pickled objects: --unsafe-load


@dataclass
class CheckpointLoadResult:
    """What :func:`load_checkpoint` did, plus the file's non-weight entries."""

    path: Path
    #: top-level entries besides the weights, e.g. ``best_prec1`` or kdlab's ``epoch``/``config``
    extra: dict[str, Any] = field(default_factory=dict)
    #: model keys left at their current values (only with ``strict=False``)
    missing_keys: list[str] = field(default_factory=list)
    #: checkpoint keys ignored (only with ``strict=False``)
    unexpected_keys: list[str] = field(default_factory=list)
    #: keys skipped because the shapes differ (only with ``strict=False``)
    shape_mismatches: list[str] = field(default_factory=list)
    #: file key -> model key, for every key loaded under another name (prefixes, classifier, literature names)
    renamed_keys: dict[str, str] = field(default_factory=dict)
    #: file keys set aside on purpose (an SSKD wrapper's self-supervision head ``proj_head.*``)
    dropped_keys: list[str] = field(default_factory=list)
    #: the foreign code base's naming the file was read in (see :mod:`kdlab.models.literature_keys`), or None
    layout: str | None = None


#: a safetensors file starts with its header's length (8 bytes, little-endian), then the JSON header
_SAFETENSORS_HEADER_START = ord("{")


def is_safetensors_file(path: PathLike) -> bool:
    """By the name (``.safetensors``) or the content (a torch file starts otherwise: zip or pickle)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8] != _SAFETENSORS_HEADER_START:
        return False
    return 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def read_safetensors_file(path: PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, on the CPU."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise ImportError(f"checkpoint {path} is a safetensors file: pip install safetensors to read it") from err
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise _io.CheckpointError(f"checkpoint {path} cannot be read as a safetensors file (truncated?): {err}") from None


def read_checkpoint_file(path: PathLike, *, unsafe: bool = False) -> Any:
    """``torch.load`` on the CPU, ``weights_only`` unless ``unsafe``; clear errors for missing/unsafe files.

    A safetensors file is read with safetensors (no unpickling, so ``unsafe`` does not apply).
    """
    path = Path(path)
    if path.is_dir():
        raise _io.CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.stat().st_size > 0 and is_safetensors_file(path):
        return read_safetensors_file(path)
    return _io.torch_load_checked(path, unsafe=unsafe)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def split_checkpoint(obj: Any, path: PathLike = "<checkpoint>") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, extra entries)`` from any supported layout."""
    if _is_state_dict(obj):
        return dict(obj), {}
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), {k: v for k, v in obj.items() if k != key}
        top = ", ".join(repr(k) for k in list(obj)[:MAX_LISTED])
        raise _io.CheckpointError(
            f"checkpoint {path} has no state_dict: expected tensors at the top level or under one of "
            f"{', '.join(STATE_DICT_KEYS)}; its top-level keys are {top}"
        )
    raise _io.CheckpointError(f"checkpoint {path} holds {_io.describe_object(obj)}, expected a dict of tensors "
                              "(a state dict)")


def _all_start_with(keys: list[str], prefix: str) -> bool:
    return bool(keys) and all(k.startswith(prefix) for k in keys)


def _classifier_prefix(model: nn.Module) -> str | None:
    """``"fc."``-style prefix of the model's classifier, found by identity among its submodules."""
    get_classifier = getattr(model, "get_classifier", None)
    if not callable(get_classifier):
        return None
    classifier = get_classifier()
    for name, module in model.named_modules():
        if module is classifier and name:
            return name + "."
    return None


@dataclass
class KeyAlignment:
    """How a file's keys map onto the model's names, decided from the key names alone."""

    #: file key -> model key, for every file key that is loaded (most map to themselves)
    names: KeyNames
    #: file keys set aside on purpose (an SSKD wrapper's self-supervision head)
    dropped: list[str] = field(default_factory=list)
    #: the foreign code base's naming the keys were read in, or None
    layout: str | None = None
    #: that naming's renames in words, for error messages
    layout_summary: str | None = None

    @property
    def renamed(self) -> dict[str, str]:
        """Only the keys whose name changes (what :class:`CheckpointLoadResult` reports)."""
        return {old: new for old, new in self.names.items() if old != new}

    def apply(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The file's tensors under the model's names, dropped keys left out."""
        return {new: state_dict[old] for old, new in self.names.items()}


def _replace_prefix(names: KeyNames, old: str, new: str) -> KeyNames:
    return {s: (new + c[len(old) :] if c.startswith(old) else c) for s, c in names.items()}


def _strip_wrappers(names: KeyNames, model_keys: list[str]) -> KeyNames:
    """``module.`` / ``_orig_mod.``, repeatedly: wrappers nest (DDP around a compiled model)."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if _all_start_with(list(names.values()), prefix) and not _all_start_with(model_keys, prefix):
                names = _replace_prefix(names, prefix, "")
                changed = True
    return names


def _match_adapter_prefix(names: KeyNames, model_keys: list[str]) -> KeyNames:
    """A plain torchvision/timm file into kdlab's adapter (``model.`` added), or the other way round."""
    current = list(names.values())
    if _all_start_with(model_keys, ADAPTER_PREFIX) and not _all_start_with(current, ADAPTER_PREFIX):
        return {s: ADAPTER_PREFIX + c for s, c in names.items()}
    if _all_start_with(current, ADAPTER_PREFIX) and not _all_start_with(model_keys, ADAPTER_PREFIX):
        return _replace_prefix(names, ADAPTER_PREFIX, "")
    return names


def _match_classifier(names: KeyNames, model: nn.Module, model_keys: list[str]) -> KeyNames:
    """A classifier saved under another name (``linear``, ``classifier``, ``head``) with the model's parameter names."""
    target = _classifier_prefix(model)
    current = list(names.values())
    if target is None or any(k.startswith(target) for k in current):
        return names
    wanted = {k[len(target) :] for k in model_keys if k.startswith(target)}
    outer = target[: -len(target.rstrip(".").split(".")[-1]) - 1]  # e.g. "model." for "model.fc."
    for alias in CLASSIFIER_ALIASES:
        source = f"{outer}{alias}."
        found = {k[len(source) :] for k in current if k.startswith(source)}
        if found and found == wanted:
            return _replace_prefix(names, source, target)
    return names


def plan_alignment(file_keys: list[str], model: nn.Module) -> KeyAlignment:
    """Which model key each file key loads into, decided from the names before any tensor is touched.

    In order: wrapper prefixes, the adapter prefix, SSKD's wrapper, the KD
    literature's module names (:mod:`kdlab.models.literature_keys`), the
    classifier alias. kdlab's own files come out unchanged.
    """
    model_keys = list(model.state_dict())
    names = _strip_wrappers({k: k for k in file_keys}, model_keys)
    names = _match_adapter_prefix(names, model_keys)
    names, dropped = unwrap_sskd(names, model_keys)
    names, layout = rename_literature_keys(names, model)
    names = _match_classifier(names, model, model_keys)
    return KeyAlignment(
        names,
        dropped,
        layout.name if layout is not None else None,
        layout.summary if layout is not None else None,
    )


def align_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys to the model's naming (see :func:`plan_alignment`)."""
    return plan_alignment(list(state_dict), model).apply(state_dict)


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{title} ({len(items)}): {shown}{more}"


def _compare(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """Missing keys, unexpected keys and ``(key, checkpoint shape, model shape)`` mismatches."""
    expected = model.state_dict()
    # BatchNorm fills num_batches_tracked itself for checkpoints that predate it (akamaster's)
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    return missing, unexpected, mismatched


def load_checkpoint(
    model: nn.Module, path: PathLike, *, strict: bool = True, unsafe: bool = False
) -> CheckpointLoadResult:
    """Load weights from ``path`` into ``model`` in place.

    Args:
        model: the network (built with the checkpoint's architecture and number of classes).
        path: a file in any supported format (see the module docstring).
        strict: every model weight must come from the file and every file weight must fit;
            otherwise raise :class:`CheckpointMismatchError` without touching the model.
            ``strict=False`` loads what fits and reports the rest in the result.
        unsafe: allow full unpickling (``weights_only=False``); trusted files only.

    Returns:
        A :class:`CheckpointLoadResult` with the file's extra entries (``best_prec1``, ``epoch``, ...).
    """
    path = Path(path)
    state_dict, extra = split_checkpoint(read_checkpoint_file(path, unsafe=unsafe), path)
    alignment = plan_alignment(list(state_dict), model)
    state_dict = alignment.apply(state_dict)
    missing, unexpected, mismatched = _compare(state_dict, model)
    if strict and (missing or unexpected or mismatched):
        parts = [f"checkpoint {path} does not fit {type(model).__name__}"]
        if alignment.layout is not None:
            parts.append(f"keys read as {alignment.layout} names ({alignment.layout_summary})")
        if alignment.dropped:
            parts.append(f"{len(alignment.dropped)} keys of SSKD's self-supervision head (proj_head.*) set aside")
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if mismatched:
            shapes = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in mismatched]
            parts.append(_listing("shape mismatches", shapes))
        parts.append("(wrong architecture, num_classes or model kwargs such as shortcut='A'?)")
        raise CheckpointMismatchError("; ".join(parts))
    skipped = {k for k, _, _ in mismatched}
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in skipped}, strict=False)
    return CheckpointLoadResult(
        path=path,
        extra=extra,
        missing_keys=missing,
        unexpected_keys=unexpected,
        shape_mismatches=sorted(skipped),
        renamed_keys=alignment.renamed,
        dropped_keys=alignment.dropped,
        layout=alignment.layout,
    )
