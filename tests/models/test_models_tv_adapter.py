"""torchvision models through the feature adapter (tv:<name>)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from kdlab.models import FeatureModel, TorchvisionFeatureModel, create_model


@pytest.fixture(scope="module")
def tv_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_resnet18_stages_are_layer1_to_layer4(tv_resnet18: nn.Module) -> None:
    model = create_model("tv:resnet18", num_classes=10).eval()
    assert isinstance(model, TorchvisionFeatureModel) and isinstance(model, FeatureModel)
    with torch.no_grad():
        features = model.forward_all(torch.randn(2, 3, 64, 64))
    assert [tuple(s.shape) for s in features.stages] == [
        (2, 64, 16, 16),
        (2, 128, 8, 8),
        (2, 256, 4, 4),
        (2, 512, 2, 2),
    ]
    assert features.embedding.shape == (2, 512) and features.logits.shape == (2, 10)
    assert model.stage_channels == [64, 128, 256, 512]
    assert model.embedding_dim == 512


def test_resnet18_preactivation_is_the_residual_sum_before_the_inplace_relu() -> None:
    model = create_model("tv:resnet18", num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_all(torch.randn(2, 3, 64, 64))
    for stage, preact in zip(features.stages, features.preact_stages):
        assert (preact < 0).any(), "the in-place ReLU must not have overwritten the recorded pre-activation"
        torch.testing.assert_close(F.relu(preact), stage)


def test_loads_a_plain_torchvision_state_dict(tv_resnet18: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(tv_resnet18.state_dict(), path)
    model = create_model("tv:resnet18", num_classes=10, checkpoint=path).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = tv_resnet18(x)
        torch.testing.assert_close(model(x), expected)
        torch.testing.assert_close(model.forward_all(x).logits, expected)


def test_the_adapter_state_dict_is_the_library_one_under_model(tv_resnet18: nn.Module) -> None:
    model = create_model("tv:resnet18", num_classes=10)
    assert set(model.state_dict()) == {f"model.{k}" for k in tv_resnet18.state_dict()}


def test_forward_all_is_one_forward_pass_and_leaves_no_hooks() -> None:
    model = create_model("tv:resnet18", num_classes=10).eval()
    calls = []
    model.model.conv1.register_forward_hook(lambda *args: calls.append(1))
    model.forward_all(torch.randn(1, 3, 32, 32))
    assert len(calls) == 1
    hooked = [n for n, m in model.model.named_modules() if m._forward_hooks and n != "conv1"]
    assert not hooked and not any(m._forward_pre_hooks for m in model.model.modules())


def test_reset_classifier_zero_gives_embedding_logits() -> None:
    model = create_model("tv:resnet18", num_classes=10).eval()
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
    features = model.forward_all(torch.randn(2, 3, 32, 32))
    assert torch.equal(features.logits, features.embedding) and features.embedding.shape == (2, 512)
    model.reset_classifier(4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_mobilenet_v2_stages_are_found_at_strides_4_to_32() -> None:
    model = create_model("tv:mobilenet_v2", num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_all(torch.randn(1, 3, 64, 64))
    assert model.stage_channels == [24, 32, 96, 1280]
    assert [s.shape[-1] for s in features.stages] == [16, 8, 4, 2]
    assert features.embedding.shape == (1, 1280)


def test_parameters_get_gradients_through_forward_all() -> None:
    model = create_model("tv:resnet18", num_classes=10).train()
    features = model.forward_all(torch.randn(2, 3, 32, 32))
    (features.logits.sum() + features.stages[1].mean() + features.preact_stages[2].mean()).backward()
    assert model.model.layer1[0].conv1.weight.grad is not None
