"""BatchNorm folding: conv -> BN pairs become one conv, the outputs do not change, the original stays."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.models import create_model
from kdlab.models.fold import fold_batchnorm


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters (a fresh BN is the identity)."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _naive_bn_of_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """bn(conv(x)) written out channel by channel in float64."""
    y = nn.functional.conv2d(
        x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(),
        conv.stride, conv.padding, conv.dilation, conv.groups,
    )
    out = torch.empty_like(y)
    bn = _detached(bn)
    for c in range(y.shape[1]):
        gamma = 1.0 if bn.weight is None else float(bn.weight[c])
        beta = 0.0 if bn.bias is None else float(bn.bias[c])
        mean, var = float(bn.running_mean[c]), float(bn.running_var[c])
        out[:, c] = (y[:, c] - mean) / (var + bn.eps) ** 0.5 * gamma + beta
    return out


def _detached(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    for p in bn.parameters():
        p.requires_grad_(False)
    return bn


@pytest.mark.parametrize("bias,affine,groups", [(False, True, 1), (True, True, 1), (False, False, 1), (True, True, 2)])
def test_single_pair_equals_naive_formula(bias: bool, affine: bool, groups: int) -> None:
    torch.manual_seed(0)
    net = _randomise_batchnorm(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=bias, groups=groups),
                                             nn.BatchNorm2d(6, affine=affine)))
    x = torch.randn(3, 4, 7, 7)
    result = fold_batchnorm(net, x)
    assert result.folded == 1
    assert isinstance(result.model[1], nn.Identity)
    with torch.no_grad():
        got = result.model(x).double()
    expected = _naive_bn_of_conv(net[0], net[1], x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()


@pytest.mark.parametrize("name,kwargs", [("resnet20", {}), ("resnet56", {"shortcut": "A"}), ("wrn_16_2", {}),
                                         ("vgg8", {}), ("MobileNetV2", {}), ("ShuffleV1", {})])
def test_zoo_models_fold_with_every_output_unchanged(name: str, kwargs: dict) -> None:
    torch.manual_seed(1)
    model = _randomise_batchnorm(create_model(name, num_classes=10, **kwargs))
    # every BatchNorm reads a convolution's output, except in pre-activation WRN blocks
    # (BN after the residual sum): there the BN inside each block follows its first conv, and the
    # first block's input BN follows the stem conv
    pairs = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if name.startswith("wrn"):
        blocks = sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules()) // 2
        pairs = blocks + 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    result = fold_batchnorm(model, x)
    assert result.folded == pairs
    with torch.no_grad():
        a, b = model.forward_all(x), result.model.forward_all(x)
    for ref, got in [(a.logits, b.logits), (a.embedding, b.embedding), *zip(a.stages, b.stages),
                     *zip(a.preact_stages, b.preact_stages)]:
        assert torch.allclose(ref, got, atol=1e-4 * ref.abs().max().item(), rtol=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the original model was modified"


class _ConvOutputUsedTwice(nn.Module):
    """The conv's output feeds the BN and a skip path: folding would change the skip path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv(x)) + self.bn2(self.conv(x))


@pytest.mark.parametrize(
    "network, reason",
    [(_ConvOutputUsedTwice, "differ"), (_SharedConv, "no convolution")],
    ids=["fold-would-change-the-outputs", "shared-modules-left-alone"],
)
def test_unfoldable_networks_are_returned_as_they_are(network: type[nn.Module], reason: str) -> None:
    torch.manual_seed(0)
    net = _randomise_batchnorm(network())
    result = fold_batchnorm(net, torch.randn(2, 3, 8, 8))
    assert result.folded == 0 and result.model is net
    assert reason in result.reason


def test_needs_eval_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train(), torch.randn(1, 3, 4, 4))
