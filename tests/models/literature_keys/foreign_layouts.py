"""Every key of a RepDistiller / mdistiller / SSKD checkpoint, its shape and its kdlab counterpart.

Derived from the few numbers per architecture in ``architectures.json`` (written
from reading those code bases' ``models/``) by walking the network the way their
constructors do, naming each tensor twice: as their code names it and as
kdlab's zoo names it (from reading ``kdlab/models``). Nothing here imports
kdlab's loader, so the tests compare the loader's renaming against an
independent one. ``real_code_digests.json`` holds the key/shape digests that the
real code produced, which :func:`digest` must reproduce.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DESCRIPTION = json.loads((HERE / "architectures.json").read_text())
REAL_CODE_DIGESTS = json.loads((HERE / "real_code_digests.json").read_text())
CODE_BASES = tuple(DESCRIPTION["sources"])
ARCHITECTURES: dict[str, dict[str, Any]] = DESCRIPTION["architectures"]
#: the state-dict entries of one BatchNorm2d (num_batches_tracked is a 0-d int64)
BN_PARTS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Entry:
    """One tensor: the foreign file's key, its shape, and the kdlab key it must load into."""

    foreign: str
    shape: tuple[int, ...]
    kdlab: str


class Walker:
    """Collects entries; every emitter takes the foreign and the kdlab name of the module."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def tensor(self, foreign: str, kdlab: str, shape: tuple[int, ...]) -> None:
        self.entries.append(Entry(foreign, tuple(shape), kdlab))

    def conv(self, names: tuple[str, str], out_c: int, in_c: int, k: int, groups: int = 1, bias: bool = False) -> None:
        foreign, kdlab = names
        self.tensor(f"{foreign}.weight", f"{kdlab}.weight", (out_c, in_c // groups, k, k))
        if bias:
            self.tensor(f"{foreign}.bias", f"{kdlab}.bias", (out_c,))

    def bn(self, names: tuple[str, str], channels: int) -> None:
        foreign, kdlab = names
        for part in BN_PARTS:
            shape = () if part == "num_batches_tracked" else (channels,)
            self.tensor(f"{foreign}.{part}", f"{kdlab}.{part}", shape)

    def linear(self, names: tuple[str, str], out_f: int, in_f: int) -> None:
        foreign, kdlab = names
        self.tensor(f"{foreign}.weight", f"{kdlab}.weight", (out_f, in_f))
        self.tensor(f"{foreign}.bias", f"{kdlab}.bias", (out_f,))


def _same(name: str) -> tuple[str, str]:
    return name, name


def _classifier(arch: dict[str, Any], code_base: str) -> str:
    classifier = arch["classifier"]
    return classifier[code_base] if isinstance(classifier, dict) else classifier


def _cifar_resnet(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """resnet.py: ``downsample`` (1x1 conv + BN) where a block changes shape; kdlab calls it ``shortcut``."""
    stem, *widths = arch["widths"]
    blocks = (arch["depth"] - 2) // 6
    w.conv(_same("conv1"), stem, 3, 3)
    w.bn(_same("bn1"), stem)
    in_c = stem
    for stage, planes in enumerate(widths, start=1):
        stride = 1 if stage == 1 else 2
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            w.conv(_same(f"{p}.conv1"), planes, in_c, 3)
            w.bn(_same(f"{p}.bn1"), planes)
            w.conv(_same(f"{p}.conv2"), planes, planes, 3)
            w.bn(_same(f"{p}.bn2"), planes)
            if b == 0 and (stride != 1 or in_c != planes):
                w.conv((f"{p}.downsample.0", f"{p}.shortcut.0"), planes, in_c, 1)
                w.bn((f"{p}.downsample.1", f"{p}.shortcut.1"), planes)
            in_c = planes
    w.linear((classifier, "fc"), num_classes, in_c)


def _resnetv2(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """resnetv2.py: kuangliu-style ResNet with a 3x3 stride-1 stem; the names are kdlab's but ``linear``."""
    bottleneck = arch["block"] == "bottleneck"
    expansion = 4 if bottleneck else 1
    w.conv(_same("conv1"), 64, 3, 3)
    w.bn(_same("bn1"), 64)
    in_c = 64
    for stage, (count, planes) in enumerate(zip(arch["blocks"], (64, 128, 256, 512)), start=1):
        for b in range(count):
            stride = 2 if stage > 1 and b == 0 else 1
            p = f"layer{stage}.{b}"
            out_c = planes * expansion
            if bottleneck:
                w.conv(_same(f"{p}.conv1"), planes, in_c, 1)
                w.bn(_same(f"{p}.bn1"), planes)
                w.conv(_same(f"{p}.conv2"), planes, planes, 3)
                w.bn(_same(f"{p}.bn2"), planes)
                w.conv(_same(f"{p}.conv3"), out_c, planes, 1)
                w.bn(_same(f"{p}.bn3"), out_c)
            else:
                w.conv(_same(f"{p}.conv1"), planes, in_c, 3)
                w.bn(_same(f"{p}.bn1"), planes)
                w.conv(_same(f"{p}.conv2"), planes, planes, 3)
                w.bn(_same(f"{p}.bn2"), planes)
            if stride != 1 or in_c != out_c:
                w.conv(_same(f"{p}.shortcut.0"), out_c, in_c, 1)
                w.bn(_same(f"{p}.shortcut.1"), out_c)
            in_c = out_c
    w.linear((classifier, "fc"), num_classes, in_c)


def _wrn(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """wrn.py: ``blockS.layer.B`` (NetworkBlock holds a Sequential ``layer``), ``convShortcut``, final ``bn1``."""
    widen = arch["widen"]
    channels = [16, 16 * widen, 32 * widen, 64 * widen]
    blocks = (arch["depth"] - 4) // 6
    w.conv(_same("conv1"), 16, 3, 3)
    for stage in (1, 2, 3):
        for b in range(blocks):
            in_c, out_c = (channels[stage - 1] if b == 0 else channels[stage]), channels[stage]
            theirs, ours = f"block{stage}.layer.{b}", f"block{stage}.{b}"
            w.bn((f"{theirs}.bn1", f"{ours}.bn1"), in_c)
            w.conv((f"{theirs}.conv1", f"{ours}.conv1"), out_c, in_c, 3)
            w.bn((f"{theirs}.bn2", f"{ours}.bn2"), out_c)
            w.conv((f"{theirs}.conv2", f"{ours}.conv2"), out_c, out_c, 3)
            if in_c != out_c:
                w.conv((f"{theirs}.convShortcut", f"{ours}.shortcut"), out_c, in_c, 1)
    w.bn(("bn1", "bn"), channels[3])
    w.linear((classifier, "fc"), num_classes, channels[3])


def _vgg(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """vgg.py with batch_norm=True: per width conv (with bias), BN, ReLU; the block's last ReLU is dropped."""
    in_c = 3
    for block, widths in enumerate(arch["cfg"]):
        for index, width in enumerate(widths):
            w.conv(_same(f"block{block}.{3 * index}"), width, in_c, 3, bias=True)
            w.bn(_same(f"block{block}.{3 * index + 1}"), width)
            in_c = width
    w.linear((classifier, "fc"), num_classes, in_c)


def _mobilenetv2(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """mobilenetv2.py (mobile_half): ``conv1`` and ``conv2`` are conv-BN-ReLU Sequentials, ``blocks.G.B.conv.*``."""
    width = arch["width_mult"]
    in_c = int(arch["stem"] * width)
    w.conv(_same("conv1.0"), in_c, 3, 3)
    w.bn(_same("conv1.1"), in_c)
    for group, (t, c, n, _) in enumerate(arch["groups"]):
        out_c = int(c * width)
        for b in range(n):
            hidden = in_c * t
            p = f"blocks.{group}.{b}.conv"
            w.conv(_same(f"{p}.0"), hidden, in_c, 1)
            w.bn(_same(f"{p}.1"), hidden)
            w.conv(_same(f"{p}.3"), hidden, hidden, 3, groups=hidden)
            w.bn(_same(f"{p}.4"), hidden)
            w.conv(_same(f"{p}.6"), out_c, hidden, 1)
            w.bn(_same(f"{p}.7"), out_c)
            in_c = out_c
    w.conv(_same("conv2.0"), arch["last"], in_c, 1)
    w.bn(_same("conv2.1"), arch["last"])
    w.linear((classifier, "fc"), num_classes, arch["last"])


def _shufflev1(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """ShuffleNetv1.py: a stage's first unit makes only the channels its concatenated shortcut lacks."""
    stem, groups = arch["stem"], arch["groups"]
    w.conv(_same("conv1"), stem, 3, 1)
    w.bn(_same("bn1"), stem)
    in_c = stem
    for stage, (width, count) in enumerate(zip(arch["widths"], arch["blocks"]), start=1):
        for b in range(count):
            out_c = width - in_c if b == 0 else width
            mid = out_c // 4
            first_groups = 1 if in_c == stem else groups
            p = f"layer{stage}.{b}"
            w.conv(_same(f"{p}.conv1"), mid, in_c, 1, groups=first_groups)
            w.bn(_same(f"{p}.bn1"), mid)
            w.conv(_same(f"{p}.conv2"), mid, mid, 3, groups=mid)
            w.bn(_same(f"{p}.bn2"), mid)
            w.conv(_same(f"{p}.conv3"), out_c, mid, 1, groups=groups)
            w.bn(_same(f"{p}.bn3"), out_c)
            in_c = width
    w.linear((classifier, "fc"), num_classes, in_c)


def _shufflev2(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """ShuffleNetv2.py: per stage a DownBlock (conv1..5) then BasicBlocks on half the channels (conv1..3)."""
    stem = arch["stem"]
    w.conv(_same("conv1"), stem, 3, 1)
    w.bn(_same("bn1"), stem)
    in_c = stem
    for stage, (width, count) in enumerate(zip(arch["widths"], arch["blocks"]), start=1):
        mid = width // 2
        p = f"layer{stage}.0"
        for index, (out_c, conv_in, k, groups) in enumerate(
            [(in_c, in_c, 3, in_c), (mid, in_c, 1, 1), (mid, in_c, 1, 1), (mid, mid, 3, mid), (mid, mid, 1, 1)], start=1
        ):
            w.conv(_same(f"{p}.conv{index}"), out_c, conv_in, k, groups=groups)
            w.bn(_same(f"{p}.bn{index}"), out_c)
        for b in range(1, count + 1):
            half = width // 2
            p = f"layer{stage}.{b}"
            for index, (k, groups) in enumerate([(1, 1), (3, half), (1, 1)], start=1):
                w.conv(_same(f"{p}.conv{index}"), half, half, k, groups=groups)
                w.bn(_same(f"{p}.bn{index}"), half)
        in_c = width
    w.conv(_same("conv2"), arch["last"], in_c, 1)
    w.bn(_same("bn2"), arch["last"])
    w.linear((classifier, "fc"), num_classes, arch["last"])


def _mobilenetv1(w: Walker, arch: dict[str, Any], num_classes: int, classifier: str) -> None:
    """mdistiller's imagenet/mobilenetv1.py: a Sequential ``model``, conv_bn then 13 conv_dw (dw-BN-ReLU-pw-BN-ReLU)."""
    stem = arch["stem"]
    w.conv(("model.0.0", "stem.0.0"), stem, 3, 3)
    w.bn(("model.0.1", "stem.0.1"), stem)
    in_c = stem
    for index, ((out_c, _), ours) in enumerate(zip(arch["units"], arch["kdlab_units"]), start=1):
        w.conv((f"model.{index}.0", f"{ours}.depthwise.0"), in_c, in_c, 3, groups=in_c)
        w.bn((f"model.{index}.1", f"{ours}.depthwise.1"), in_c)
        w.conv((f"model.{index}.3", f"{ours}.pointwise"), out_c, in_c, 1)
        w.bn((f"model.{index}.4", f"{ours}.bn"), out_c)
        in_c = out_c
    w.linear((classifier, "fc"), num_classes, in_c)


FAMILIES = {
    "cifar_resnet": _cifar_resnet,
    "resnetv2": _resnetv2,
    "wrn": _wrn,
    "vgg": _vgg,
    "mobilenetv2": _mobilenetv2,
    "shufflev1": _shufflev1,
    "shufflev2": _shufflev2,
    "mobilenetv1": _mobilenetv1,
}


def num_classes_of(name: str) -> int:
    """100 for the CIFAR-100 networks; mdistiller's MobileNetV1 is built for ImageNet's 1000 classes."""
    return int(ARCHITECTURES[name].get("num_classes", 100))


def code_bases_of(name: str) -> list[str]:
    """The code bases whose model files define the architecture."""
    return list(ARCHITECTURES[name]["files"])


def entries(name: str, code_base: str) -> list[Entry]:
    """Every tensor of ``name`` as saved from ``code_base``'s definition, in constructor order."""
    arch = ARCHITECTURES[name]
    if code_base not in arch["files"]:
        raise KeyError(f"{code_base} has no {name}")
    walker = Walker()
    FAMILIES[arch["family"]](walker, arch, num_classes_of(name), _classifier(arch, code_base))
    return walker.entries


def digest(items: list[Entry]) -> str:
    """sha256 of the sorted ``key:shape`` lines (the same recipe produced real_code_digests.json)."""
    lines = sorted(f"{e.foreign}:{','.join(map(str, e.shape))}" for e in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
