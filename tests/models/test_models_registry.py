"""Model registry: listing, creation by name, helpful errors, optional timm."""

from __future__ import annotations

import sys

import pytest
from torch import nn

from kdlab.models import create_model, list_models, register_model
from kdlab.models.registry import _REGISTRY

ZOO = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
    "resnet32x4", "ResNet50", "ResNet18", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13",
    "vgg16", "vgg19", "MobileNetV2", "ShuffleV1", "ShuffleV2", "MobileNetV1",
]  # fmt: skip


def test_list_models_holds_the_whole_zoo_sorted() -> None:
    names = list_models()
    assert set(ZOO) <= set(names)
    assert names == sorted(names, key=str.lower)


def test_list_models_filters_with_a_case_insensitive_glob() -> None:
    assert list_models("wrn_40_*") == ["wrn_40_1", "wrn_40_2"]
    assert "ResNet50" in list_models("resnet*")
    assert list_models("no_such_*") == []


def test_list_models_lists_torchvision_models_with_their_prefix() -> None:
    names = list_models("tv:resnet*")
    assert "tv:resnet18" in names and "tv:resnet50" in names
    assert all(n.startswith("tv:resnet") for n in names)


def test_create_model_passes_num_classes() -> None:
    assert create_model("resnet8", num_classes=7).get_classifier().out_features == 7


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet57'.*'resnet56'"):
        create_model("resnet57")


def test_unknown_name_suggestion_ignores_case() -> None:
    with pytest.raises(ValueError, match="'ResNet50'"):
        create_model("resnet50")


def test_unknown_torchvision_name_suggests_torchvision_names() -> None:
    with pytest.raises(ValueError, match=r"unknown torchvision model 'resnet19'.*'resnet18'"):
        create_model("tv:resnet19")


def test_unknown_option_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"'depth'.*accepts: in_chans, shortcut"):
        create_model("resnet20", depth=20)


def test_negative_num_classes_is_rejected() -> None:
    with pytest.raises(ValueError, match="num_classes.*-1"):
        create_model("resnet8", num_classes=-1)


def test_register_model_adds_a_name_and_refuses_duplicates() -> None:
    def tiny_net(num_classes: int = 100) -> nn.Module:
        return nn.Linear(4, num_classes)

    try:
        register_model(name="tiny_test_net")(tiny_net)
        assert "tiny_test_net" in list_models()
        assert create_model("tiny_test_net", num_classes=3).out_features == 3
        with pytest.raises(ValueError, match="already registered"):
            register_model(name="tiny_test_net")(lambda num_classes=1: nn.Identity())
    finally:
        _REGISTRY.pop("tiny_test_net", None)


def test_registering_a_reserved_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="reserved prefix"):
        register_model(name="tv:mine")(lambda num_classes=1: nn.Identity())


def test_timm_names_without_timm_give_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail even where timm is installed
    with pytest.raises(ImportError, match=r"timm:resnet18 needs the optional dependency timm.*pip install"):
        create_model("timm:resnet18")
    with pytest.raises(ImportError, match="pip install"):
        list_models("timm:*")


def test_torchvision_refuses_pretrained_weights_and_other_channel_counts() -> None:
    with pytest.raises(ValueError, match="never downloads"):
        create_model("tv:resnet18", weights="DEFAULT")
    with pytest.raises(ValueError, match="in_chans=1"):
        create_model("tv:resnet18", in_chans=1)
