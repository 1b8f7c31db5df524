"""The CIFAR KD zoo: parameter counts of the literature, shapes, gradients, feature access."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab.models import FeatureModel, create_model

#: parameters (millions) at 100 classes, as in the RepDistiller/CRD tables
LITERATURE_PARAMS_M = {
    "resnet8": 0.084,
    "resnet14": 0.181,
    "resnet20": 0.278,
    "resnet32": 0.473,
    "resnet44": 0.667,
    "resnet56": 0.862,
    "resnet110": 1.737,
    "resnet8x4": 1.234,
    "resnet32x4": 7.434,
    "ResNet50": 23.705,
    "ResNet18": 11.220,  # not in those tables: mdistiller's CIFAR ResNet18 (resnetv2.py) has 11,220,132
    "wrn_16_1": 0.181,
    "wrn_16_2": 0.703,
    "wrn_40_1": 0.570,
    "wrn_40_2": 2.255,
    "vgg8": 3.965,
    "vgg11": 9.277,
    "vgg13": 9.462,
    "vgg16": 14.774,
    "vgg19": 20.087,
    "MobileNetV2": 0.813,
    "ShuffleV1": 0.949,
    "ShuffleV2": 1.356,
}
CIFAR_ZOO = sorted(LITERATURE_PARAMS_M)
#: deeper/wider copies of the families below: the same code, so a forward pass (no backward) suffices
HEAVY = {
    "ResNet50", "ResNet18", "vgg16", "vgg19", "resnet32x4", "resnet110", "resnet56", "resnet44", "resnet32", "wrn_40_2"
}  # fmt: skip
LIGHT = [name for name in CIFAR_ZOO if name not in HEAVY]
#: networks whose stages end in a linear BatchNorm: their preact_stages are their stages
NO_STAGE_ACTIVATION = {"MobileNetV2"}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_parameter_count_matches_the_literature_within_one_percent(name: str) -> None:
    expected = LITERATURE_PARAMS_M[name] * 1e6
    got = count_params(create_model(name, num_classes=100))
    assert abs(got - expected) / expected < 0.01, f"{name}: {got / 1e6:.4f}M vs {expected / 1e6:.3f}M"


def test_mobilenetv1_is_the_imagenet_network_with_about_4_2m_parameters() -> None:
    model = create_model("MobileNetV1", num_classes=1000)
    assert abs(count_params(model) - 4.23e6) / 4.23e6 < 0.01
    features = model.eval().forward_all(torch.randn(1, 3, 224, 224))
    assert [tuple(s.shape[1:]) for s in features.stages] == [(128, 56, 56), (256, 28, 28), (512, 14, 14), (1024, 7, 7)]
    assert features.logits.shape == (1, 1000)


@pytest.mark.parametrize("name", LIGHT)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).train()
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([1, 2])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"{name}: parameters without a finite gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_small_single_channel_8x8_images_work(name: str) -> None:
    model = create_model(name, num_classes=10, in_chans=1).train()
    logits = model(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10)
    if name not in HEAVY:
        logits.sum().backward()
        assert model.get_classifier().weight.grad is not None


@pytest.mark.parametrize("name", CIFAR_ZOO)
def test_forward_all_agrees_with_forward_and_declares_its_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    assert isinstance(model, FeatureModel)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_all(x)
        logits = model(x)
    torch.testing.assert_close(features.logits, logits, rtol=0, atol=0)
    assert features.logits.shape == (2, 7)
    assert features.embedding.shape == (2, model.embedding_dim)
    assert [s.shape[1] for s in features.stages] == model.stage_channels
    assert [s.shape for s in features.preact_stages] == [s.shape for s in features.stages]
    heights = [s.shape[-1] for s in features.stages]
    assert heights == sorted(heights, reverse=True), f"stages must go shallow to deep: {heights}"
    for stage, preact in zip(features.stages, features.preact_stages):
        if name in NO_STAGE_ACTIVATION:
            assert torch.equal(preact, stage)
        else:
            torch.testing.assert_close(F.relu(preact), stage)


@pytest.mark.parametrize("name", ["resnet20", "wrn_16_2", "vgg8", "ShuffleV1", "ShuffleV2", "ResNet50", "MobileNetV1"])
def test_preactivation_keeps_negative_values_where_the_stage_ends_in_relu(name: str) -> None:
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_all(torch.randn(2, 3, 32, 32))
    assert all((p < 0).any() for p in features.preact_stages)


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV2"])
def test_reset_classifier_zero_makes_an_embedding_model(name: str) -> None:
    model = create_model(name, num_classes=10).eval()
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model.num_classes == 0
    features = model.forward_all(torch.randn(2, 3, 32, 32))
    assert torch.equal(features.logits, features.embedding)
    assert features.logits.shape == (2, model.embedding_dim)
    model.reset_classifier(5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_num_classes_zero_at_creation_builds_an_embedding_model() -> None:
    model = create_model("resnet8", num_classes=0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_reset_classifier_follows_the_model_dtype() -> None:
    model = create_model("resnet8", num_classes=10).to(torch.float64)
    model.reset_classifier(3)
    assert model.get_classifier().weight.dtype == torch.float64


def test_cifar_resnet_stage_widths_and_shortcut_options() -> None:
    assert create_model("resnet20").stage_channels == [16, 32, 64]
    assert create_model("resnet8x4").stage_channels == [64, 128, 256]
    option_a = create_model("resnet20", num_classes=10, shortcut="A")
    # the paper's parameter-free shortcut: 0.27M (akamaster's table), no 1x1 convs
    assert count_params(option_a) == 269_722
    assert not any("shortcut" in name for name, _ in option_a.named_parameters())
    assert create_model("resnet8x4", shortcut="A")(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_resnet18_is_the_cifar_stem_basic_block_resnet_of_mdistiller() -> None:
    model = create_model("ResNet18", num_classes=100).eval()
    assert model.stage_channels == [64, 128, 256, 512] and model.embedding_dim == 512
    # basic blocks (two 3x3 convs), projection shortcuts only where a stage starts with stride 2
    assert sorted(n for n, _ in model.named_modules() if n.endswith("shortcut.0")) == [
        "layer2.0.shortcut.0", "layer3.0.shortcut.0", "layer4.0.shortcut.0"
    ]  # fmt: skip
    assert not any(n.endswith("conv3") for n, _ in model.named_modules())
    with torch.no_grad():
        features = model.forward_all(torch.randn(2, 3, 32, 32))
    # stride-1 3x3 stem without max-pool: 32x32 reaches the last stage at 4x4
    assert [tuple(s.shape[1:]) for s in features.stages] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert all((p < 0).any() for p in features.preact_stages)


def test_bad_constructor_options_are_rejected_with_their_value() -> None:
    with pytest.raises(ValueError, match="shortcut.*'C'"):
        create_model("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="in_chans.*0"):
        create_model("vgg8", in_chans=0)


def test_forward_all_rejects_non_image_input_with_its_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3, 32\)"):
        create_model("resnet8").forward_all(torch.randn(2, 3, 32))
