"""Every built-in term: builds from a config, gives a finite scalar, trains only the student side,
and leaves the frozen teacher untouched."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.methods.base import term_registry
from kdlab.methods.build import term_parameters
from method_helpers import TERM_CONFIGS, build, make_batch, tiny_teacher

ALL_TERMS = sorted(TERM_CONFIGS)


def test_every_method_is_registered_with_a_paper_and_documented_parameters():
    registry = term_registry()
    for name in ["ce", *ALL_TERMS]:
        assert name in registry, name
        cls = registry[name]
        assert cls.paper, name
        assert cls.__doc__, name
        term_parameters(cls)  # parameters are introspectable (kdlab list-methods)


@pytest.mark.parametrize("name", ALL_TERMS)
def test_term_gives_a_finite_scalar(name):
    distiller = build([{"name": "ce"}, *TERM_CONFIGS[name]])
    out = distiller(make_batch())
    assert out.loss.shape == () and math.isfinite(float(out.loss))
    assert name in out.terms and out.terms[name].shape == ()
    assert math.isfinite(float(out.terms[name]))
    assert out.logits.shape == (8, 5)


@pytest.mark.parametrize("name", ALL_TERMS)
def test_only_student_and_term_modules_receive_gradients(name):
    distiller = build(TERM_CONFIGS[name])
    distiller(make_batch()).loss.backward()
    teacher = distiller.teacher
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in distiller.student.parameters())
    for key, param in distiller.terms.named_parameters():
        assert param.grad is not None, f"{name}: term parameter {key} got no gradient"


@pytest.mark.parametrize("name", ALL_TERMS)
def test_teacher_is_bitwise_unchanged_and_stays_in_eval_mode(name):
    teacher = tiny_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = build([{"name": "ce"}, *TERM_CONFIGS[name]], teacher=teacher)
    distiller.train()
    assert distiller.student.training and not teacher.training and not teacher.model.training
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for step in range(3):
        out = distiller(make_batch(seed=step), epoch=0, progress=step / 5)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert not teacher.training
    after = teacher.state_dict()
    assert before.keys() == after.keys()
    for key in before:  # includes BatchNorm running statistics and num_batches_tracked
        assert torch.equal(before[key], after[key]), key
    # the teacher is not part of the module tree: not optimised, not saved with the method
    assert not any(k.startswith("teacher") for k in distiller.state_dict())


def test_dkd_warmup_follows_the_official_per_epoch_ramp():
    dkd = build([{"name": "dkd", "warmup": 20}]).terms["dkd"]
    assert dkd.weight_scale(0.0) == pytest.approx(1 / 20)
    assert dkd.weight_scale(0.99) == pytest.approx(1 / 20)
    assert dkd.weight_scale(9.5) == pytest.approx(10 / 20)
    assert dkd.weight_scale(19.0) == 1.0 and dkd.weight_scale(200.0) == 1.0
    assert build([{"name": "dkd", "warmup": 0}]).terms["dkd"].weight_scale(0.0) == 1.0
    # ImageNet's WARMUP 1 is the full weight from the first step, as in mdistiller
    assert build([{"name": "dkd", "warmup": 1}]).terms["dkd"].weight_scale(0.0) == 1.0


def test_at_sums_or_averages_its_stage_pairs_and_logs_each():
    batch = make_batch()
    mean = build([{"name": "at", "reduction": "mean"}])(batch)
    summed = build([{"name": "at", "reduction": "sum"}])(batch)
    parts = sorted(k for k in mean.terms if k.startswith("at/"))
    assert parts == ["at/s0_t0", "at/s1_t1", "at/s2_t2"]
    values = torch.stack([mean.terms[k] for k in parts])
    assert torch.allclose(mean.terms["at"], values.mean())
    assert torch.allclose(summed.terms["at"], values.sum())


def test_fitnet_creates_a_regressor_only_when_shapes_differ():
    from kdlab.methods.terms._adapters import ConvRegressor

    differ = build([{"name": "fitnet"}]).terms["fitnet"]  # resnet8 32 ch vs wrn_16_2 64 ch
    assert isinstance(differ.regressor, ConvRegressor)
    same = build([{"name": "fitnet"}], teacher=_resnet8_teacher()).terms["fitnet"]
    assert isinstance(same.regressor, torch.nn.Identity)
    always = build([{"name": "fitnet", "regressor": "always"}], teacher=_resnet8_teacher()).terms["fitnet"]
    assert isinstance(always.regressor, ConvRegressor)
    linear = build([{"name": "fitnet", "hint": "embedding", "guided": "embedding"}]).terms["fitnet"]
    assert isinstance(linear.regressor, torch.nn.Linear)


def test_feature_terms_accept_a_stage_or_the_embedding():
    batch = make_batch()
    for terms in (
        [{"name": "rkd", "feature": 1}],
        [{"name": "pkt", "feature": -1}],
        [{"name": "sp", "stage": "embedding"}],
        [{"name": "crd", "feature": 0, "nce_k": 4, "feat_dim": 4}],
        [{"name": "at", "stages": [0, -1]}],
        [{"name": "fitnet", "hint": 0, "guided": -1}],
    ):
        out = build(terms)(batch)
        assert math.isfinite(float(out.loss)), terms


def _resnet8_teacher():
    from kdlab.engine.teacher import FrozenTeacher
    from kdlab.models import create_model

    torch.manual_seed(3)
    return FrozenTeacher(create_model("resnet8", num_classes=5))
