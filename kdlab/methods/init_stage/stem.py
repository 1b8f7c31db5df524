"""FSP's feature list: RepDistiller's ``feat[:-1]``, i.e. the stem's output followed by the stages.

RepDistiller's feature lists start with the stem's output ``f0`` (after the
first convolution, and its BN-ReLU where the network has them); kdlab's
``stages`` start after it, except for VGG, whose first stage (block 0) *is*
RepDistiller's ``f0``. FSP pairs consecutive maps of ``feat[:-1]``, so for the
CIFAR ResNets, ResNet50, the WRNs, the ShuffleNets and MobileNetV2 the stem's
output is read from the stem's last module by a forward hook
(:class:`StemTap`) during the one forward pass the trainer runs anyway.

The teacher's forward runs inside :class:`~kdlab.engine.teacher.FrozenTeacher`,
which by default runs a BatchNorm-folded copy of the network; a hook on the
network itself then never fires. The FSP initialisation run therefore sets
``teacher.fold_batchnorm: false``; a main-stage FSP loss (weight > 0) needs the
same setting, and says so.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models.mobilenetv2 import MobileNetV2Cifar
from kdlab.models.resnet_cifar import CifarResNet
from kdlab.models.resnet_imagenet_style import ImageNetStyleResNet
from kdlab.models.shufflenetv1 import ShuffleNetV1
from kdlab.models.shufflenetv2 import ShuffleNetV2
from kdlab.models.vgg import VGG
from kdlab.models.wrn import WideResNet

#: network class -> (the submodule whose output ends the stem, whether the stem's ReLU follows it): the
#: networks apply that ReLU functionally, and a stage's blocks are called one by one (``run_stage``), so the
#: output of the stem's last module is the one place every forward passes through
STEM_OUTPUT_OF: dict[type, tuple[str, bool]] = {
    CifarResNet: ("bn1", True),
    ImageNetStyleResNet: ("bn1", True),
    ShuffleNetV1: ("bn1", True),
    ShuffleNetV2: ("bn1", True),
    WideResNet: ("conv1", False),  # RepDistiller's f0: the first convolution's output, no BN-ReLU
    MobileNetV2Cifar: ("conv1", False),  # conv-BN-ReLU as one module
}
#: networks whose first stage already is RepDistiller's ``f0``
FIRST_STAGE_IS_STEM: tuple[type, ...] = (VGG,)


def network_of(model: nn.Module) -> nn.Module:
    """The network itself: a FrozenTeacher's wrapped model, else ``model``."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "fold_batchnorm") else model


def stem_module(model: nn.Module, who: str) -> Optional[tuple[nn.Module, bool]]:
    """(the module ending ``model``'s stem, ReLU after it); None where the stages already start with the stem.

    Raises ValueError for a network whose stem kdlab does not know.
    """
    network = network_of(model)
    if isinstance(network, FIRST_STAGE_IS_STEM):
        return None
    for cls, (name, relu) in STEM_OUTPUT_OF.items():
        if isinstance(network, cls):
            return network.get_submodule(name), relu
    raise ValueError(
        f"stem=true: kdlab does not know where the stem of the {who} ({type(network).__name__}) ends; "
        "set stem: false to pair its stages only"
    )


class StemTap:
    """Records the stem's output at every forward of its network (a forward hook on the stem's last module)."""

    def __init__(self, module: nn.Module, relu: bool, who: str) -> None:
        self.who = who
        self.relu = relu
        self.value: Optional[torch.Tensor] = None
        self.handle = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        self.value = output

    def take(self, views: int = 1) -> torch.Tensor:
        """The stem output of the last forward (view 0 rows of multi-view batches); each forward is read once."""
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError(
                f"fsp: the {self.who}'s stem output was not recorded in this step"
                + (" (the teacher ran a BatchNorm-folded or compiled copy: set teacher.fold_batchnorm: false "
                   "and teacher.compile: false)" if self.who == "teacher" else "")
            )
        if value.is_inference():  # recorded inside the frozen teacher's inference mode
            value = value.clone()
        if views > 1:
            value = value[::views]
        # the same function of the same tensor as the network's own (functional) ReLU: the same gradient
        return F.relu(value) if self.relu else value

    def remove(self) -> None:
        self.handle.remove()


def make_tap(model: nn.Module, who: str) -> Optional[StemTap]:
    """A tap on ``model``'s stem, or None for a network whose stages already start with it."""
    found = stem_module(model, who)
    return None if found is None else StemTap(found[0], found[1], who)


def stem_taps(student: nn.Module, teacher: nn.Module) -> tuple[Optional[StemTap], Optional[StemTap]]:
    """Taps on both networks' stems."""
    return make_tap(student, "student"), make_tap(teacher, "teacher")


def fsp_maps(stages: list[torch.Tensor], tap: Optional[StemTap], views: int = 1) -> list[torch.Tensor]:
    """FSP's maps of one forward pass: the recorded stem output (if any), then the stages."""
    return ([tap.take(views)] if tap is not None else []) + list(stages)


@torch.no_grad()
def fsp_channels(model: nn.Module, tap: Optional[StemTap], in_chans: int, image_size: int,
                 device: Any = None) -> list[tuple[str, int]]:
    """(name, channels) of FSP's maps of ``model``, from a 2-image dry run in eval mode."""
    was_training = model.training
    model.eval()
    try:
        features = model.forward_all(torch.zeros(2, in_chans, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    named = [(f"stage {i}", int(s.shape[1])) for i, s in enumerate(features.stages)]
    if tap is None:
        return named
    try:
        stem = tap.take()
    except RuntimeError as err:  # at build time: a configuration problem
        raise ValueError(str(err)) from None
    return [("stem", int(stem.shape[1]))] + named


def check_equal_channels(student: list[tuple[str, int]], teacher: list[tuple[str, int]],
                         student_name: str, teacher_name: str) -> None:
    """RepDistiller's FSP check: as many maps, with equal channels, in both networks; else a ValueError."""
    def listing(channels: list[tuple[str, int]]) -> str:
        return ", ".join(f"{name} {count}" for name, count in channels)

    shown = f"student {student_name} [{listing(student)}], teacher {teacher_name} [{listing(teacher)}]"
    if len(student) != len(teacher):
        raise ValueError(
            f"fsp: FSP pairs the networks' maps one to one, but the student has {len(student)} and the teacher "
            f"{len(teacher)}: {shown}"
        )
    unequal = [f"{s_name} ({s} vs {t})" for (s_name, s), (_, t) in zip(student, teacher) if s != t]
    if unequal:
        raise ValueError(
            f"fsp: FSP needs equal channels in the student's and the teacher's maps (RepDistiller's FSP raises "
            f"otherwise; no FSP for this pair): {shown}; unequal at {', '.join(unequal)}"
        )
