"""The KD literature's CIFAR model code names some weights differently from kdlab: renamed at load.

Why: the published CIFAR-100 teachers (and most students) were saved from
RepDistiller/CRD's ``models/`` (HobbitLong/RepDistiller), which mdistiller
(megvii-research/mdistiller ``mdistiller/models/cifar/``, the DKD and CKD code)
and SSKD (xuguodong03/SSKD ``models/``) copy. kdlab's zoo holds the same
networks (same layers in the same order with the same shapes: checked against
that code, logits equal), but a few modules carry other names. Each
:class:`ForeignLayout` is recognised from the file's keys alone (a name only the
foreign code uses) and only for the kdlab class it belongs to, so kdlab's own
files and the other formats are never touched. No tensor needs a reshape.

Per kdlab network (their file: their names -> kdlab's):

- resnet8 ... resnet110, resnet8x4, resnet32x4 (``models/resnet.py``):
  ``layerS.B.downsample.{0,1}`` -> ``layerS.B.shortcut.{0,1}``.
- wrn_16_1 ... wrn_40_2 (``models/wrn.py``): ``blockS.layer.B`` -> ``blockS.B``,
  ``convShortcut`` -> ``shortcut``, the final ``bn1`` -> ``bn``.
- MobileNetV2 (``models/mobilenetv2.py``): ``classifier.0`` -> ``fc`` (SSKD's
  copy has a bare ``classifier``, renamed by the generic classifier alias).
- MobileNetV1 (mdistiller ``mdistiller/models/imagenet/mobilenetv1.py``):
  ``model.0.{0,1}`` -> ``stem.0.{0,1}``; ``model.K.{0,1,3,4}`` -> the K-th
  separable unit's ``depthwise.0``, ``depthwise.1``, ``pointwise``, ``bn``.
- vgg8 ... vgg19, ShuffleV1, ShuffleV2, ResNet50, ResNet18 (``vgg.py``,
  ``ShuffleNetv1.py``, ``ShuffleNetv2.py``, ``resnetv2.py``): only the
  classifier differs (``classifier`` / ``linear``), which the generic alias of
  :mod:`kdlab.models.checkpoint` renames to ``fc``.

SSKD's scripts also save its wrapper (``backbone.`` + the self-supervision head
``proj_head.``; ``student.py``'s student checkpoints and ``ckpt/teacher.pth``):
:func:`unwrap_sskd` strips ``backbone.`` and sets the head aside (kdlab's SSKD
method reads that head itself, see ``head_checkpoint`` in docs/sskd.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from kdlab.models.mobilenetv1 import MobileNetV1ImageNet, SeparableUnit
from kdlab.models.mobilenetv2 import MobileNetV2Cifar
from kdlab.models.resnet_cifar import CifarResNet
from kdlab.models.wrn import WideResNet

#: file key -> current name, the state every renaming step reads and returns
KeyNames = dict[str, str]
Renamer = Callable[[str, nn.Module], str]

SSKD_BACKBONE = "backbone."
SSKD_HEAD = "proj_head."


@dataclass(frozen=True)
class ForeignLayout:
    """One foreign code base's naming of one kdlab network family."""

    #: what the error messages and :class:`~kdlab.models.checkpoint.CheckpointLoadResult` call it
    name: str
    model_types: tuple[type[nn.Module], ...]
    #: matches at least one key of such a file and no key of kdlab's naming
    marker: re.Pattern[str]
    #: foreign key -> kdlab key (keys it does not know come back unchanged)
    rename: Renamer
    #: the renames in words, for error messages
    summary: str


def _regex_renamer(*rules: tuple[str, str]) -> Renamer:
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]

    def rename(key: str, model: nn.Module) -> str:
        for pattern, replacement in compiled:
            key = pattern.sub(replacement, key)
        return key

    return rename


_MOBILENETV1_KEY = re.compile(r"^model\.(\d+)\.(\d+)\.(.+)$")
#: index inside mdistiller's ``conv_dw`` Sequential (conv, BN, ReLU, conv, BN, ReLU) -> kdlab's SeparableUnit part
_MOBILENETV1_PARTS = {0: "depthwise.0", 1: "depthwise.1", 3: "pointwise", 4: "bn"}


def _rename_mobilenetv1(key: str, model: nn.Module) -> str:
    """``model.0`` is the stem conv-BN-ReLU; ``model.K`` (K >= 1) is the K-th separable unit, in forward order."""
    match = _MOBILENETV1_KEY.match(key)
    if match is None:
        return key
    index, part, rest = int(match[1]), int(match[2]), match[3]
    if index == 0:
        return f"stem.0.{part}.{rest}"
    units = [name for name, module in model.named_modules() if isinstance(module, SeparableUnit)]
    if index > len(units) or part not in _MOBILENETV1_PARTS:
        return key
    return f"{units[index - 1]}.{_MOBILENETV1_PARTS[part]}.{rest}"


LAYOUTS: tuple[ForeignLayout, ...] = (
    ForeignLayout(
        name="RepDistiller/mdistiller/SSKD CIFAR ResNet (models/resnet.py)",
        model_types=(CifarResNet,),
        marker=re.compile(r"^layer\d+\.\d+\.downsample\."),
        rename=_regex_renamer((r"^(layer\d+\.\d+)\.downsample\.", r"\1.shortcut.")),
        summary="layerS.B.downsample -> layerS.B.shortcut",
    ),
    ForeignLayout(
        name="RepDistiller/mdistiller/SSKD WRN (models/wrn.py)",
        model_types=(WideResNet,),
        marker=re.compile(r"^block\d+\.layer\.\d+\."),
        rename=_regex_renamer(
            (r"^(block\d+)\.layer\.(\d+)\.", r"\1.\2."),
            (r"^(block\d+\.\d+)\.convShortcut\.", r"\1.shortcut."),
            (r"^bn1\.", "bn."),
        ),
        summary="blockS.layer.B -> blockS.B, convShortcut -> shortcut, bn1 -> bn",
    ),
    ForeignLayout(
        name="RepDistiller/mdistiller MobileNetV2 (models/mobilenetv2.py)",
        model_types=(MobileNetV2Cifar,),
        marker=re.compile(r"^classifier\.0\."),
        rename=_regex_renamer((r"^classifier\.0\.", "fc.")),
        summary="classifier.0 -> fc",
    ),
    ForeignLayout(
        name="mdistiller MobileNetV1 (mdistiller/models/imagenet/mobilenetv1.py)",
        model_types=(MobileNetV1ImageNet,),
        marker=_MOBILENETV1_KEY,
        rename=_rename_mobilenetv1,
        summary="model.0 -> stem.0, model.K.{0,1,3,4} -> <K-th unit>.{depthwise.0,depthwise.1,pointwise,bn}",
    ),
)


def detect_layout(keys: list[str], model: nn.Module) -> ForeignLayout | None:
    """The foreign naming ``keys`` are in, for this kind of model; None for kdlab's own (or any other) naming."""
    for layout in LAYOUTS:
        if isinstance(model, layout.model_types) and any(layout.marker.search(k) for k in keys):
            return layout
    return None


def rename_literature_keys(names: KeyNames, model: nn.Module) -> tuple[KeyNames, ForeignLayout | None]:
    """Rename keys in a foreign naming to kdlab's; unchanged (and None) when none is recognised.

    A rename that would give two keys one name is not applied: the file then
    fails the usual comparison, naming its keys, instead of losing a tensor.
    """
    layout = detect_layout(list(names.values()), model)
    if layout is None:
        return names, None
    renamed = {source: layout.rename(current, model) for source, current in names.items()}
    if len(set(renamed.values())) < len(renamed):
        return names, None
    return renamed, layout


def unwrap_sskd(names: KeyNames, model_keys: list[str]) -> tuple[KeyNames, list[str]]:
    """SSKD's wrapper (``backbone.*`` + ``proj_head.*``) -> the backbone's keys, and the head's keys set aside.

    Only when every key is under one of the two and the model itself has no
    ``backbone.`` (a detector does): anything else is left alone.
    """
    current = list(names.values())
    is_wrapper = (
        any(k.startswith(SSKD_BACKBONE) for k in current)
        and any(k.startswith(SSKD_HEAD) for k in current)
        and all(k.startswith((SSKD_BACKBONE, SSKD_HEAD)) for k in current)
        and not any(k.startswith((SSKD_BACKBONE, SSKD_HEAD)) for k in model_keys)
    )
    if not is_wrapper:
        return names, []
    kept = {s: c[len(SSKD_BACKBONE) :] for s, c in names.items() if c.startswith(SSKD_BACKBONE)}
    dropped = [s for s, c in names.items() if c.startswith(SSKD_HEAD)]
    return kept, dropped
