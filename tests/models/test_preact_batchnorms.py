"""preact_batchnorms: the BatchNorm behind each pre-activation stage (OFD's margins)."""

from __future__ import annotations

import pytest
import torch

from kdlab.models import create_model
from kdlab.models.preact_bn import preact_batchnorms

NETWORKS = ["resnet8", "resnet8x4", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV1", "ResNet50", "ResNet18",
            "MobileNetV1", "tv:resnet18", "tv:resnet50"]
#: networks whose pre-activation is exactly the BN's output (no residual added after it)
EXACT = {"wrn_16_2", "vgg8", "MobileNetV1"}


@pytest.mark.parametrize("name", NETWORKS)
def test_shifting_the_bn_bias_shifts_exactly_that_preact_stage(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    bns = preact_batchnorms(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.forward_all(x).preact_stages
        assert len(bns) == len(before)
        for i, (bn, preact) in enumerate(zip(bns, before)):
            assert isinstance(bn, torch.nn.BatchNorm2d)
            assert bn.num_features == preact.shape[1], (name, i)
            delta = torch.linspace(0.5, 1.5, bn.num_features)
            bn.bias.add_(delta)
            after = model.forward_all(x).preact_stages[i]
            bn.bias.sub_(delta)
            # the pre-activation is the BN's output (plus a term the BN does not feed): +delta per channel
            torch.testing.assert_close(after - preact, delta.view(1, -1, 1, 1).expand_as(preact), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_preact_is_the_bn_output_where_no_residual_follows(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    outputs = []
    handles = [bn.register_forward_hook(lambda m, i, o: outputs.append(o)) for bn in preact_batchnorms(model)]
    with torch.no_grad():
        preacts = model.forward_all(torch.randn(2, 3, 32, 32)).preact_stages
    for h in handles:
        h.remove()
    assert len(outputs) == len(preacts)
    for out, preact in zip(outputs, preacts):
        torch.testing.assert_close(out, preact)


def test_a_wrapper_is_unwrapped_and_unknown_networks_are_refused():
    from kdlab.engine.teacher import FrozenTeacher

    model = create_model("resnet8", num_classes=10)
    assert preact_batchnorms(FrozenTeacher(model)) == preact_batchnorms(model)
    with pytest.raises(ValueError, match="ShuffleNetV2 has no BatchNorm per pre-activation stage"):
        preact_batchnorms(create_model("ShuffleV2", num_classes=10))
    with pytest.raises(ValueError, match="torchvision MobileNetV2"):
        preact_batchnorms(create_model("tv:mobilenet_v2", num_classes=10))
