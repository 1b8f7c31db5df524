"""The BatchNorm layer behind each pre-activation stage (OFD's margins need it).

``preact_batchnorms(model)[i]`` is the ``nn.BatchNorm2d`` whose output is entry i of
``model.forward_all(x).preact_stages``, or its last-added term where the
pre-activation is a residual sum: OFD (Heo et al., ICCV 2019) reads the
distribution of a teacher's pre-ReLU values from that BN's affine parameters,
the layers the official code returns from ``get_bn_before_relu``:

- CIFAR ResNets, ImageNet-style ResNets, torchvision ResNets: the stage's last
  block's last BN (``bn2`` of a basic block, ``bn3`` of a bottleneck). The
  pre-activation is that BN's output *plus the shortcut*; the official code uses
  the BN alone all the same.
- Wide ResNets: the BN that opens the next stage (``block2[0].bn1``,
  ``block3[0].bn1``) and the final ``bn``: the pre-activation is exactly its output.
- VGG: each block's last BN (exactly its output).
- MobileNetV2 (CIFAR): the stage's last inverted residual's projection BN (plus the
  identity residual where the block has one).
- ShuffleNetV1: the stage's last unit's ``bn3`` (plus its shortcut).
- MobileNetV1: the stage's last unit's pointwise BN (exactly its output).

ShuffleNetV2 has none (its pre-activation mixes an un-normalised half of the
channels into the BN's half by the channel shuffle), nor have networks not
listed: :func:`preact_batchnorms` raises a ValueError naming the network. A
wrapper with a ``model`` attribute (e.g. the trainer's frozen teacher) is
unwrapped.
"""

from __future__ import annotations

from typing import cast

from torch import nn

from kdlab.models.mobilenetv1 import MobileNetV1ImageNet
from kdlab.models.mobilenetv2 import MobileNetV2Cifar
from kdlab.models.resnet_cifar import CifarResNet
from kdlab.models.resnet_imagenet_style import Bottleneck, ImageNetStyleResNet
from kdlab.models.shufflenetv1 import ShuffleNetV1
from kdlab.models.tv_adapter import TorchvisionFeatureModel
from kdlab.models.vgg import VGG
from kdlab.models.wrn import WideResNet

__all__ = ["preact_batchnorms"]


def _last_bn(block: nn.Module, name: str) -> nn.BatchNorm2d:
    return cast(nn.BatchNorm2d, getattr(block, name))


def _residual_stage_bns(layers: list[nn.Sequential]) -> list[nn.BatchNorm2d]:
    out = []
    for layer in layers:
        last = layer[len(layer) - 1]
        out.append(_last_bn(last, "bn3" if hasattr(last, "bn3") else "bn2"))
    return out


def _torchvision_bns(adapter: TorchvisionFeatureModel) -> list[nn.BatchNorm2d]:
    from torchvision.models import ResNet

    if not isinstance(adapter.model, ResNet):
        raise ValueError(
            f"preact_batchnorms: torchvision {type(adapter.model).__name__} has no BatchNorm per pre-activation "
            "stage known to kdlab (only torchvision ResNets have)"
        )
    layers = [cast(nn.Sequential, adapter.model.get_submodule(f"layer{i}")) for i in range(1, 5)]
    return _residual_stage_bns(layers)


def preact_batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """One BatchNorm per entry of ``preact_stages``, shallow to deep (see the module docstring).

    Raises:
        ValueError: for a network whose pre-activation stages have no such BatchNorm.
    """
    if isinstance(model, (CifarResNet, ShuffleNetV1)):
        return _residual_stage_bns([model.layer1, model.layer2, model.layer3])
    if isinstance(model, ImageNetStyleResNet):
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        return [_last_bn(layer[len(layer) - 1], "bn3" if isinstance(layer[0], Bottleneck) else "bn2")
                for layer in layers]
    if isinstance(model, MobileNetV1ImageNet):
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        return [_last_bn(layer[len(layer) - 1], "bn") for layer in layers]
    if isinstance(model, WideResNet):
        return [_last_bn(model.block2[0], "bn1"), _last_bn(model.block3[0], "bn1"), model.bn]
    if isinstance(model, VGG):
        blocks = [model.block0, model.block1, model.block2, model.block3, model.block4]
        return [cast(nn.BatchNorm2d, block[len(block) - 1]) for block in blocks]
    if isinstance(model, MobileNetV2Cifar):
        from kdlab.models.mobilenetv2 import STAGE_GROUPS

        return [cast(nn.BatchNorm2d, model.blocks[g][-1].conv[-1]) for g in STAGE_GROUPS]  # type: ignore[index]
    if isinstance(model, TorchvisionFeatureModel):
        return _torchvision_bns(model)
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return preact_batchnorms(inner)
    raise ValueError(
        f"preact_batchnorms: {type(model).__name__} has no BatchNorm per pre-activation stage known to kdlab "
        "(CIFAR/ImageNet-style ResNets, WRN, VGG, MobileNetV1/V2, ShuffleNetV1 and torchvision ResNets have)"
    )
