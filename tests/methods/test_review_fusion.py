"""ReviewKD's attention-based fusion: shapes, order, gradients, init, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import hcl_loss
from kdlab.methods.modules import AttentionFusion, ReviewFusion

# (channels, height, width) per level, shallow -> deep.
THREE_LEVELS = [(8, 8, 8), (16, 4, 4), (32, 1, 1)]
FIVE_LEVELS = [(4, 16, 12), (6, 8, 6), (6, 8, 6), (10, 3, 2), (12, 1, 1)]  # levels 2 and 3 of equal size


def student_maps(levels: list[tuple[int, int, int]], batch: int = 2) -> list[torch.Tensor]:
    return [torch.randn(batch, c, h, w) for c, h, w in levels]


@pytest.mark.parametrize(
    ("levels", "teacher_channels"),
    [(THREE_LEVELS, [5, 7, 9]), (FIVE_LEVELS, [3, 5, 7, 9, 11])],
    ids=["3-levels", "5-levels"],
)
def test_outputs_have_teacher_channels_at_student_sizes(levels: list, teacher_channels: list[int]) -> None:
    fusion = ReviewFusion([c for c, _, _ in levels], teacher_channels, mid_channels=6)
    outputs = fusion(student_maps(levels))
    assert [tuple(o.shape) for o in outputs] == [(2, t, h, w) for t, (_, h, w) in zip(teacher_channels, levels)]
    assert all(torch.isfinite(o).all() for o in outputs)


def test_only_the_deepest_block_does_not_fuse() -> None:
    fusion = ReviewFusion([4, 6, 6, 10, 12], [3, 5, 7, 9, 11], 6)
    assert [block.fuse for block in fusion.fusions] == [True, True, True, True, False]
    assert fusion.fusions[-1].attention is None


@pytest.mark.parametrize("levels", [THREE_LEVELS, FIVE_LEVELS], ids=["3-levels", "5-levels"])
def test_gradients_reach_every_parameter(levels: list) -> None:
    torch.manual_seed(0)
    teacher_channels = [c + 1 for c, _, _ in levels]
    fusion = ReviewFusion([c for c, _, _ in levels], teacher_channels, mid_channels=6)
    outputs = fusion(student_maps(levels))
    teacher = [torch.randn_like(o) for o in outputs]
    hcl_loss(outputs, teacher).backward()
    for name, param in fusion.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_gradient_reaches_every_student_map() -> None:
    maps = [m.requires_grad_(True) for m in student_maps(FIVE_LEVELS)]
    fusion = ReviewFusion([c for c, _, _ in FIVE_LEVELS], [3, 5, 7, 9, 11], 6)
    outputs = fusion(maps)
    # Only the shallowest output: its gradient reaches the deeper maps through the residuals alone.
    (outputs[0] * torch.randn_like(outputs[0])).sum().backward()
    for i, m in enumerate(maps):
        assert m.grad is not None and m.grad.abs().sum() > 0, i


def test_deterministic_with_a_seed() -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        fusion = ReviewFusion([4, 6, 6, 10, 12], [3, 5, 7, 9, 11], 6)
        outputs = fusion(student_maps(FIVE_LEVELS))
        results.append(([p.detach().clone() for p in fusion.parameters()], outputs))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_deeper_level_does_not_depend_on_shallower_ones() -> None:
    fusion = ReviewFusion([c for c, _, _ in THREE_LEVELS], [5, 7, 9], 6).eval()
    maps = student_maps(THREE_LEVELS)
    first = fusion(maps)
    changed = fusion([torch.randn_like(maps[0]), maps[1], maps[2]])
    torch.testing.assert_close(first[1], changed[1])
    torch.testing.assert_close(first[2], changed[2])
    assert not torch.allclose(first[0], changed[0])


def test_attention_fusion_matches_a_hand_written_forward() -> None:
    block = AttentionFusion(4, 6, 3, fuse=True).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for bn in (block.reduce[1], block.output[1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    x, residual = torch.randn(2, 4, 6, 4), torch.randn(2, 6, 3, 2)
    out, fused = block(x, residual)

    def bn(z: torch.Tensor, layer: torch.nn.BatchNorm2d) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        scale = layer.weight.view(shape) / torch.sqrt(layer.running_var.view(shape) + layer.eps)
        return (z - layer.running_mean.view(shape)) * scale + layer.bias.view(shape)

    u = bn(F.conv2d(x, block.reduce[0].weight), block.reduce[1])
    # Nearest upsampling of (3, 2) to (6, 4) repeats every cell 2x2.
    up = residual.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert block.attention is not None
    logits = F.conv2d(torch.cat([u, up], 1), block.attention.weight, block.attention.bias)
    a, b = torch.sigmoid(logits[:, :1]), torch.sigmoid(logits[:, 1:])
    expected_fused = a * u + b * up
    expected_out = bn(F.conv2d(expected_fused, block.output[0].weight, padding=1), block.output[1])
    torch.testing.assert_close(fused, expected_fused)
    torch.testing.assert_close(out, expected_out)


def test_non_fusing_block_is_conv_bn_conv_bn() -> None:
    block = AttentionFusion(4, 6, 3, fuse=False).eval()
    x = torch.randn(2, 4, 5, 5)
    out, fused = block(x)
    torch.testing.assert_close(fused, block.reduce(x))
    torch.testing.assert_close(out, block.output(block.reduce(x)))


def test_convolutions_are_kaiming_uniform_with_a_1() -> None:
    torch.manual_seed(0)
    block = AttentionFusion(64, 32, 48, fuse=True)
    for conv in (block.reduce[0], block.output[0]):
        assert conv.bias is None
        fan_in = conv.weight[0].numel()
        bound = math.sqrt(6.0 / ((1 + 1**2) * fan_in))  # gain sqrt(2 / (1 + a^2)) with a = 1
        weight = conv.weight.detach()
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.9 * bound  # uniform over the whole range, not a narrower default
        assert weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.1)
    assert block.attention is not None and block.attention.bias is not None


def test_wrong_inputs_are_reported() -> None:
    fusion = ReviewFusion([4, 8], [5, 9], 6)
    with pytest.raises(ValueError, match="expected 2 student maps"):
        fusion([torch.randn(2, 4, 4, 4)])
    with pytest.raises(ValueError, match=r"student_features\[1\] must be \(batch, 8, height, width\), "
                                         r"got \(2, 7, 2, 2\)"):
        fusion([torch.randn(2, 4, 4, 4), torch.randn(2, 7, 2, 2)])
    with pytest.raises(ValueError, match="one teacher channel count per student level"):
        ReviewFusion([4, 8], [5], 6)
    with pytest.raises(ValueError, match="residual"):
        AttentionFusion(4, 6, 3, fuse=True)(torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match="takes no residual"):
        AttentionFusion(4, 6, 3, fuse=False)(torch.randn(2, 4, 4, 4), torch.randn(2, 6, 2, 2))
