"""The timm adapter, on a stand-in that speaks timm's model API (timm itself is optional)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.models import FeatureModel, TimmFeatureModel, create_model


class TimmLikeNetWithoutIntermediates(nn.Module):
    """A tiny network with timm's interface (feature_info, forward_head, classifier API), like older timm models."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 16
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
        )
        self.fc: nn.Module = nn.Linear(16, num_classes)
        self.feature_info = [
            {"num_chs": 8, "reduction": 2, "module": "stem"},
            {"num_chs": 8, "reduction": 4, "module": "stages.0"},
            {"num_chs": 16, "reduction": 8, "module": "stages.1"},
        ]
        self.pretrained_cfg = {"input_size": (3, 32, 32)}

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = x.mean((2, 3))
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.stages(self.stem(x)))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(16, num_classes) if num_classes else nn.Identity()


class TimmLikeNet(TimmLikeNetWithoutIntermediates):
    """Adds timm >= 1.0's forward_intermediates: (final map, [map at each requested feature_info index])."""

    def forward_intermediates(self, x, indices=None, output_fmt="NCHW"):  # type: ignore[no-untyped-def]
        assert output_fmt == "NCHW"
        maps = [self.stem(x)]
        for stage in self.stages:
            maps.append(stage(maps[-1]))
        wanted = range(len(maps)) if indices is None else indices
        return maps[-1], [maps[i] for i in wanted]


@pytest.mark.parametrize("net_class", [TimmLikeNet, TimmLikeNetWithoutIntermediates])
def test_stages_skip_the_stride_2_stem_and_logits_match_forward(net_class: type[nn.Module]) -> None:
    torch.manual_seed(0)
    net = net_class()
    model = TimmFeatureModel(net)
    assert isinstance(model, FeatureModel)
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_all(x)
    assert [tuple(s.shape[1:]) for s in features.stages] == [(8, 8, 8), (16, 4, 4)]
    torch.testing.assert_close(features.logits, model(x))
    torch.testing.assert_close(features.embedding, net.forward_head(net.stages(net.stem(x)), pre_logits=True))
    assert model.stage_channels == [8, 16] and model.embedding_dim == 16


def test_reset_classifier_uses_timm_and_zero_gives_embedding_logits() -> None:
    model = TimmFeatureModel(TimmLikeNet())
    model.reset_classifier(0)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    features = model.forward_all(torch.randn(2, 3, 32, 32))
    assert torch.equal(features.logits, features.embedding)


def test_real_timm_model_when_timm_is_installed() -> None:
    pytest.importorskip("timm", reason="timm is an optional dependency")
    model = create_model("timm:resnet18", num_classes=10).eval()
    with torch.no_grad():
        features = model.forward_all(torch.randn(1, 3, 64, 64))
    assert model.stage_channels == [64, 128, 256, 512]
    assert features.embedding.shape == (1, 512) and features.logits.shape == (1, 10)


def _info(*strides: int) -> list[dict]:
    return [{"reduction": s, "num_chs": 8, "module": f"m{i}"} for i, s in enumerate(strides)]


def test_default_stages_hierarchical_last_per_stride_isotropic_four_evenly_spaced() -> None:
    from kdlab.models.timm_adapter import default_stage_indices

    assert default_stage_indices(_info(2, 4, 8, 16, 32)) == [1, 2, 3, 4]  # the stride-2 stem is no stage
    assert default_stage_indices(_info(4, 4, 8, 8, 16)) == [1, 3, 4]  # the map before the next downsampling
    assert default_stage_indices(_info(*[16] * 12)) == [2, 5, 8, 11]  # ViT-B/16: blocks 3, 6, 9, 12
    assert default_stage_indices(_info(*[16] * 6)) == [0, 2, 3, 5]
    assert default_stage_indices(_info(16, 16, 16)) == [0, 1, 2]
    assert default_stage_indices([]) == []


def test_stage_indices_option_on_the_stand_in() -> None:
    model = TimmFeatureModel(TimmLikeNet(), stage_indices=[-1])
    assert model.stage_indices == [2] and model.stage_channels == [16]
    assert [tuple(s.shape[1:]) for s in model.forward_all(torch.randn(1, 3, 32, 32)).stages] == [(16, 4, 4)]
    with pytest.raises(ValueError, match="stage_indices must be a non-empty list"):
        TimmFeatureModel(TimmLikeNet(), stage_indices=[])
