"""CTKD's learnable temperature (``temperature: learnable`` on kd and dkd): the reversed gradient, the
cosine curriculum of the official script, the value it starts from, the logged temperature, resume."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.config import ConfigError
from kdlab.losses import dkd_loss, kd_loss
from kdlab.methods.modules.learnable_temperature import LearnableTemperature, reversal_strength, reverse_gradient
from method_helpers import build, make_batch


def _official_decay(epoch: int, loops: float = 10.0, high: float = 0.0, low: float = -1.0) -> float:
    """The official CosineDecay(max 0, min -1, loops 10) at 1-based epoch, written out independently."""
    i = min(max(epoch, 0), loops)
    return (math.cos(i * math.pi / loops) + 1.0) * 0.5 * (high - low) + low


def test_the_curriculum_is_the_official_cosine_decay_with_its_sign_folded_in():
    for epoch in range(0, 15):
        # the official layer multiplies the gradient by the (negative) decay value; ours by -strength
        assert reversal_strength(epoch) == pytest.approx(-_official_decay(epoch), abs=1e-12)
    assert reversal_strength(1) == pytest.approx((1 - math.cos(math.pi / 10)) / 2)
    assert reversal_strength(10) == reversal_strength(240) == pytest.approx(1.0)


def test_gradient_reversal_is_the_identity_forward_and_minus_strength_backward():
    x = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([2.0, 5.0], dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, -1.25], dtype=torch.float64))


def test_the_temperature_starts_at_one_plus_twenty_sigmoid_one_and_ascends_the_distillation_loss():
    module = LearnableTemperature()
    t = module(epoch=4)  # 1-based epoch 5
    assert t.shape == () and float(t.detach()) == pytest.approx(1 + 20 / (1 + math.exp(-1)), rel=1e-6)
    # d(loss)/d(theta) by hand: loss = f(T(theta)), the reversed gradient is -strength * f'(T) * T'(theta)
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    loss = kd_loss(student, teacher, temperature=t.double())
    loss.backward()
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    plain = kd_loss(student, teacher, temperature=1 + 20 * torch.sigmoid(theta))
    (expected,) = torch.autograd.grad(plain, theta)
    strength = reversal_strength(5)
    assert float(module.theta.grad) == pytest.approx(-strength * float(expected), rel=1e-5)


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_a_learnable_term_logs_its_temperature_and_trains_it(name):
    extra = {"warmup": 0} if name == "dkd" else {}
    distiller = build([{"name": "ce"}, {"name": name, "temperature": "learnable", **extra}])
    term = distiller.terms[name]
    assert term.temperature is None and isinstance(term.learnable_temperature, LearnableTemperature)
    parameters = {id(p) for p in distiller.parameters()}
    assert id(term.learnable_temperature.theta) in parameters  # the optimiser sees it, checkpoints carry it
    assert f"terms.{name}.learnable_temperature.theta" in distiller.state_dict()
    batch = make_batch()
    out = distiller(batch, epoch=3, progress=3.0)
    logged = out.terms[f"{name}/temperature"]
    assert float(logged) == pytest.approx(1 + 20 / (1 + math.exp(-1)), rel=1e-6)
    # the term's value is the loss at that temperature
    with torch.no_grad():
        student = distiller.student(batch["image"])
        teacher = distiller.teacher(batch["image"])
    student, teacher = getattr(student, "logits", student), getattr(teacher, "logits", teacher)
    if name == "kd":
        expected = kd_loss(student, teacher, temperature=float(logged))
    else:
        expected = dkd_loss(student, teacher, batch["target"], temperature=float(logged))
    torch.testing.assert_close(out.terms[name], expected, rtol=1e-5, atol=1e-6)
    out.loss.backward()
    grad = term.learnable_temperature.theta.grad
    assert grad is not None and torch.isfinite(grad).all() and float(grad.abs()) > 0


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_a_fixed_temperature_is_unchanged_and_logs_no_temperature(name):
    extra = {"warmup": 0} if name == "dkd" else {}
    distiller = build([{"name": name, "temperature": 4, **extra}])
    assert distiller.terms[name].learnable_temperature is None
    out = distiller(make_batch())
    assert f"{name}/temperature" not in out.terms


@pytest.mark.parametrize("value", ["learned", "4", True])
def test_a_temperature_must_be_a_number_or_learnable(value):
    with pytest.raises((ValueError, ConfigError), match="temperature"):
        build([{"name": "kd", "temperature": value}])


def test_ctkd_epochs_sets_the_curriculum_length_and_needs_a_learnable_temperature():
    distiller = build([{"name": "kd", "temperature": "learnable", "ctkd_epochs": 5}])
    module = distiller.terms["kd"].learnable_temperature
    assert module.loops == 5 and module.strength(epoch=4) == pytest.approx(1.0)  # 1-based epoch 5 of 5
    assert build([{"name": "kd", "temperature": "learnable"}]).terms["kd"].learnable_temperature.loops == 10
    with pytest.raises((ValueError, ConfigError), match="ctkd_epochs=5 applies only with temperature: learnable"):
        build([{"name": "dkd", "temperature": 4, "ctkd_epochs": 5}])
    with pytest.raises((ValueError, ConfigError), match="ctkd_epochs"):
        build([{"name": "kd", "temperature": "learnable", "ctkd_epochs": 0}])
