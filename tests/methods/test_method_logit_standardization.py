"""The ``logit_standardization`` parameter of the kd and dkd terms (KD+LS, DKD+LS)."""

from __future__ import annotations

import pytest
import torch

from kdlab.config import ConfigError
from kdlab.losses import dkd_loss, kd_loss, logit_standardize
from method_helpers import build, make_batch


def _logits(distiller, batch):
    with torch.no_grad():
        student = distiller.student(batch["image"])
        teacher = distiller.teacher(batch["image"])
    # zoo models may return Features or plain logits
    student = getattr(student, "logits", student)
    teacher = getattr(teacher, "logits", teacher)
    return student, teacher


@pytest.mark.parametrize("temperature", [2.0, 4.0])
def test_kd_with_logit_standardization_is_kd_of_standardised_logits(temperature):
    batch = make_batch()
    distiller = build([{"name": "kd", "temperature": temperature, "logit_standardization": True}])
    distiller.eval()
    with torch.no_grad():
        value = distiller(batch).terms["kd"]
    student, teacher = _logits(distiller, batch)
    expected = kd_loss(logit_standardize(student), logit_standardize(teacher), temperature=temperature)
    torch.testing.assert_close(value, expected)
    assert not torch.allclose(value, kd_loss(student, teacher, temperature=temperature))


def test_dkd_with_logit_standardization_is_dkd_of_standardised_logits():
    batch = make_batch()
    params = {"alpha": 9.0, "beta": 72.0, "temperature": 2.0}
    distiller = build([{"name": "dkd", "warmup": 0, "logit_standardization": True, **params}])
    distiller.eval()
    with torch.no_grad():
        value = distiller(batch).terms["dkd"]
    student, teacher = _logits(distiller, batch)
    expected = dkd_loss(logit_standardize(student), logit_standardize(teacher), batch["target"], **params)
    torch.testing.assert_close(value, expected)
    assert not torch.allclose(value, dkd_loss(student, teacher, batch["target"], **params))


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_logit_standardization_is_off_by_default_and_keeps_the_plain_loss(name):
    batch = make_batch()
    extra = {"warmup": 0} if name == "dkd" else {}
    default = build([{"name": name, **extra}])
    explicit = build([{"name": name, "logit_standardization": False, **extra}])
    assert default.terms[name].logit_standardization is False
    default.eval(), explicit.eval()
    with torch.no_grad():
        a, b = default(batch).terms[name], explicit(batch).terms[name]
    student, teacher = _logits(default, batch)
    plain = kd_loss(student, teacher) if name == "kd" else dkd_loss(student, teacher, batch["target"])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, plain)


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_logit_standardization_must_be_a_boolean(name):
    with pytest.raises((ValueError, ConfigError), match="logit_standardization"):
        build([{"name": name, "logit_standardization": 1}])
