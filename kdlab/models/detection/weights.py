"""Loading weights into detectors: a classification file into the backbone, a detector file into all of it.

Both go through kdlab's checkpoint readers (safe load, nested formats,
``module.``/``_orig_mod.`` prefixes) and fail with
:class:`~kdlab.models.checkpoint.CheckpointMismatchError` naming the file and
the keys. Two detection specifics are handled here rather than in the
classification loader:

- a backbone file's classifier (``fc``/``linear``/``classifier``/``head``) has no
  place in a detector and is ignored, whatever its number of classes;
- torchvision's COCO files of the 0.12 era name the FPN convolutions
  ``inner_blocks.<i>.weight`` where torchvision >= 0.13 has ``inner_blocks.<i>.0.weight``
  (torchvision renames them only when the file's metadata is kept), and
  FrozenBatchNorm2d has no ``num_batches_tracked``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from kdlab.models.checkpoint import (
    CLASSIFIER_ALIASES,
    CheckpointLoadResult,
    CheckpointMismatchError,
    align_keys,
    load_checkpoint,
    read_checkpoint_file,
    split_checkpoint,
)

PathLike = str | os.PathLike[str]
MAX_LISTED = 10
COUNTER = "num_batches_tracked"


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{title} ({len(items)}): {shown}{more}"


def _mismatch_error(
    head: str, missing: list[str], unexpected: list[str], mismatched: list[str], hint: str
) -> CheckpointMismatchError:
    parts = [head]
    if missing:
        parts.append(_listing("missing keys", missing))
    if unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if mismatched:
        parts.append(_listing("shape mismatches", mismatched))
    parts.append(hint)
    return CheckpointMismatchError("; ".join(parts))


def _is_classifier_key(key: str) -> bool:
    return key.split(".", 1)[0] in CLASSIFIER_ALIASES


def load_classifier_weights(net: nn.Module, path: PathLike, what: str, *, unsafe: bool = False) -> CheckpointLoadResult:
    """Load a classification checkpoint into the (not yet wrapped) backbone network ``net``.

    Everything but the classifier must fit exactly; the classifier's keys (any
    number of classes, present or not) are ignored: a detector replaces it.
    """
    result = load_checkpoint(net, path, strict=False, unsafe=unsafe)
    missing = [k for k in result.missing_keys if not _is_classifier_key(k)]
    unexpected = [k for k in result.unexpected_keys if not _is_classifier_key(k)]
    mismatched = [k for k in result.shape_mismatches if not _is_classifier_key(k)]
    if missing or unexpected or mismatched:
        raise _mismatch_error(
            f"backbone checkpoint {Path(path)} does not fit the {what} backbone ({type(net).__name__})",
            missing,
            unexpected,
            mismatched,
            "(wrong backbone, or backbone_kwargs such as {'shortcut': 'A'} for akamaster's CIFAR ResNets? "
            f"classifier keys {'/'.join(CLASSIFIER_ALIASES)} are ignored)",
        )
    return result


def _upgrade_fpn_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``<fpn>.inner_blocks.<i>.weight`` -> ``<fpn>.inner_blocks.<i>.0.weight`` where the model has the latter."""
    expected = model.state_dict()
    state_dict = dict(state_dict)
    for prefix, module in model.named_modules():
        if not isinstance(module, FeaturePyramidNetwork):
            continue
        base = f"{prefix}." if prefix else ""
        for block in ("inner_blocks", "layer_blocks"):
            for index in range(len(module.inner_blocks)):
                for kind in ("weight", "bias"):
                    old, new = f"{base}{block}.{index}.{kind}", f"{base}{block}.{index}.0.{kind}"
                    if old in state_dict and new not in state_dict and new in expected:
                        state_dict[new] = state_dict.pop(old)
    return state_dict


def load_detector_weights(model: nn.Module, path: PathLike, *, unsafe: bool = False) -> CheckpointLoadResult:
    """Load a whole detector: kdlab's ``{"model": ...}``, a plain state dict or a torchvision COCO file.

    Strict: every weight of the model must come from the file and fit, else
    :class:`CheckpointMismatchError` before anything is changed. BatchNorm's
    step counter may be absent (FrozenBatchNorm2d files) or extra (a file of a
    BatchNorm model loaded into a FrozenBatchNorm2d one).
    """
    path = Path(path)
    state_dict, extra = split_checkpoint(read_checkpoint_file(path, unsafe=unsafe), path)
    state_dict = _upgrade_fpn_keys(align_keys(state_dict, model), model)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(COUNTER)]
    unexpected = [
        k
        for k in state_dict
        if k not in expected and not (k.endswith(COUNTER) and k[: -len(COUNTER)] + "running_mean" in expected)
    ]
    mismatched = [
        f"{k}: checkpoint {list(v.shape)} vs model {list(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        name = getattr(model, "kdlab_name", type(model).__name__)
        raise _mismatch_error(
            f"checkpoint {path} does not fit detector {name}",
            missing,
            unexpected,
            mismatched,
            "(wrong detector name, num_classes (K object classes give K + 1 predictor outputs; "
            "torchvision's COCO files need num_classes=90) or options such as fpn_channels, representation_size, "
            "returned_stages, anchor_sizes?)",
        )
    model.load_state_dict(state_dict, strict=False)  # strictness checked above, counters handled by the modules
    return CheckpointLoadResult(path=path, extra=extra)
