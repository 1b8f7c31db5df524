"""OFD's margin and partial L2 loss against naive float64 loops written from the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.losses import OFDLoss, ofd_loss, ofd_margin


def _phi(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def reference_margin(gamma: list[float], beta: list[float], min_cdf: float = 1e-3) -> list[float]:
    out = []
    for g, b in zip(gamma, beta):
        s = abs(g)
        if _cdf(-b / s) > min_cdf:
            out.append(b - s * _phi(b / s) / _cdf(-b / s))
        else:
            out.append(-3 * s)
    return out


def _avg_pool(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Adaptive average pooling by its definition (bins floor(i*H/h) .. ceil((i+1)*H/h))."""
    batch, channels, height, width = t.shape
    out = torch.zeros(batch, channels, h, w, dtype=torch.float64)
    for i in range(h):
        r0, r1 = (i * height) // h, -((-(i + 1) * height) // h)
        for j in range(w):
            c0, c1 = (j * width) // w, -((-(j + 1) * width) // w)
            out[:, :, i, j] = t[:, :, r0:r1, c0:c1].double().mean(dim=(2, 3))
    return out


def reference_loss(students, teachers, margins) -> float:
    n = len(students)
    total = 0.0
    for i, (s, t, m) in enumerate(zip(students, teachers, margins)):
        s = s.double()
        if t.shape[-2:] != s.shape[-2:]:
            t = _avg_pool(t, s.shape[2], s.shape[3])
        t = t.double()
        layer = 0.0
        batch, channels, height, width = s.shape
        for b in range(batch):
            for c in range(channels):
                for y in range(height):
                    for x in range(width):
                        target = max(float(t[b, c, y, x]), float(m[c]))
                        value = float(s[b, c, y, x])
                        if value > target or target > 0:
                            layer += (value - target) ** 2
        total += layer / batch * 2.0 ** (-(n - 1 - i))
    return total


def test_margin_matches_the_truncated_gaussian_mean_and_the_fallback():
    gamma = torch.tensor([1.0, -0.5, 2.0, 0.1, 1.0, 0.3], dtype=torch.float64)
    beta = torch.tensor([0.0, 0.3, -1.0, 0.5, 3.5, -0.2], dtype=torch.float64)  # 0.1/0.5 and 1/3.5: fallback
    got = ofd_margin(gamma, beta)
    want = reference_margin(gamma.tolist(), beta.tolist())
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert got[3] == pytest.approx(-0.3) and got[4] == pytest.approx(-3.0)
    assert got[0] == pytest.approx(-math.sqrt(2 / math.pi))  # E[x | x < 0] of N(0, 1)
    assert bool((got < 0).all())


def test_margin_is_the_numerical_mean_of_the_negative_part():
    gamma, beta = 0.7, 0.4
    xs = torch.linspace(-10, 0, 200001, dtype=torch.float64)
    density = torch.exp(-0.5 * ((xs - beta) / gamma) ** 2)
    numeric = float((xs * density).sum() / density.sum())
    assert float(ofd_margin(torch.tensor([gamma]), torch.tensor([beta]))) == pytest.approx(numeric, abs=1e-4)


def test_margin_min_cdf_zero_gamma_half_precision_and_errors():
    gamma, beta = torch.tensor([1.0]), torch.tensor([2.5])  # Phi(-2.5) = 0.0062
    assert float(ofd_margin(gamma, beta, min_cdf=0.01)) == pytest.approx(-3.0)
    assert float(ofd_margin(gamma, beta)) == pytest.approx(reference_margin([1.0], [2.5])[0], rel=1e-6)
    zero = ofd_margin(torch.zeros(2), torch.tensor([-0.4, 0.4]))
    torch.testing.assert_close(zero, torch.tensor([-0.4, 0.0]))
    half = ofd_margin(torch.tensor([1.0, 2.0]).half(), torch.tensor([0.1, -0.2]).half())
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match=r"bn_weight \(3,\) and bn_bias \(2,\)"):
        ofd_margin(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match=r"bn_weight must be 1-D \(channels,\), got shape \(2, 3\)"):
        ofd_margin(torch.ones(2, 3), torch.ones(2, 3))


def _case(seed: int, shapes):
    g = torch.Generator().manual_seed(seed)
    students, teachers, margins = [], [], []
    for (b, c, h, w), (th, tw) in shapes:
        students.append(torch.randn(b, c, h, w, generator=g, dtype=torch.float64))
        teachers.append(torch.randn(b, c, th, tw, generator=g, dtype=torch.float64) * 1.5)
        margins.append(-torch.rand(c, generator=g, dtype=torch.float64))
    return students, teachers, margins


def test_loss_matches_the_loop_reference_over_layers_with_pooling():
    shapes = [((3, 2, 4, 4), (8, 8)), ((3, 3, 3, 3), (5, 5)), ((3, 4, 2, 2), (2, 2))]
    students, teachers, margins = _case(0, shapes)
    got = ofd_loss(students, teachers, margins)
    assert got.dtype == torch.float64 and got.shape == ()
    assert float(got) == pytest.approx(reference_loss(students, teachers, margins), rel=1e-10)


def test_single_layer_weight_one_and_skipped_positions():
    s = torch.tensor([[[[-2.0, 0.5], [1.0, -0.1]]]], dtype=torch.float64)
    t = torch.tensor([[[[-1.0, -3.0], [2.0, -0.5]]]], dtype=torch.float64)
    m = torch.tensor([-0.8], dtype=torch.float64)
    # t' = [-0.8, -0.8, 2, -0.5]; counted: s=0.5>-0.8 -> 1.69, t'=2>0 -> 1, s=-0.1>-0.5 -> 0.16; -2 < -0.8 skipped
    assert float(ofd_loss([s], [t], [m])) == pytest.approx(1.69 + 1.0 + 0.16)


def test_module_half_precision_gradients_and_shape_errors():
    students, teachers, margins = _case(1, [((2, 3, 4, 4), (4, 4)), ((2, 5, 2, 2), (4, 4))])
    module = OFDLoss(margins)
    assert set(dict(module.named_buffers())) == {"margin0", "margin1"}
    expected = ofd_loss(students, teachers, margins)
    halves = [s.half().requires_grad_() for s in students]
    value = module(halves, [t.half() for t in teachers])
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(float(expected), rel=2e-2)
    value.backward()
    assert all(h.grad is not None and torch.isfinite(h.grad).all() for h in halves)
    with pytest.raises(ValueError, match=r"student_features\[0\] \(2, 3, 4, 4\) and teacher_features\[0\] "
                                         r"\(2, 4, 4, 4\) must have the same number of channels"):
        ofd_loss([students[0]], [torch.zeros(2, 4, 4, 4)], [margins[0]])
    with pytest.raises(ValueError, match=r"margins\[0\] must have shape \(3,\).*got \(1, 3, 1, 1\)"):
        ofd_loss([students[0]], [teachers[0]], [margins[0].view(1, 3, 1, 1)])
    with pytest.raises(ValueError, match="2 student_features, 1 teacher_features and 2 margins"):
        ofd_loss(students, teachers[:1], margins)
    with pytest.raises(ValueError, match=r"student_features\[0\] must be 4-D .* got shape \(2, 3\)"):
        ofd_loss([torch.zeros(2, 3)], [teachers[0]], [margins[0]])
