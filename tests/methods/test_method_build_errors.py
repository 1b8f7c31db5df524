"""Wrong method configs fail when the run is built, with messages that name the culprit."""

from __future__ import annotations

import pytest
import torch

from kdlab.config import ConfigError
from kdlab.methods.terms._adapters import ConvRegressor
from kdlab.methods.terms._features import resolve_feature, stage_pairs
from kdlab.models.features import Features
from method_helpers import build, make_batch, tiny_teacher


@pytest.mark.parametrize("name", ["kd", "dkd", "ckd"])
def test_logit_terms_refuse_a_teacher_with_other_classes(name):
    with pytest.raises(ConfigError, match="teacher has 7 classes but the student has 5"):
        build([{"name": name}], teacher=tiny_teacher(classes=7))


@pytest.mark.parametrize("terms", [[{"name": "at"}], [{"name": "crd", "nce_k": 4}], [{"name": "fitnet"}]])
def test_feature_terms_work_with_a_teacher_of_other_classes(terms):
    distiller = build(terms, teacher=tiny_teacher(classes=7))
    assert torch.isfinite(distiller(make_batch()).loss)


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"distill.terms\[0\].temprature.*did you mean temperature"):
        build([{"name": "dkd", "temprature": 2}])


@pytest.mark.parametrize(
    "terms, message",
    [
        ([{"name": "sp", "stage": 3}], r"stage=3 is out of range: the student has 3 stages \[0: \(2, 16, 8, 8\)"),
        ([{"name": "rkd", "feature": "pooled"}], r"feature='pooled' must be a stage index"),
        ([{"name": "at", "stages": []}], r"stages=\[\] must be 'all' or a non-empty list"),
        ([{"name": "at", "stages": "embedding"}], r"stages\[0\]='embedding' must be a stage index"),
        ([{"name": "fitnet", "hint": "embedding", "guided": 1}], "a stage can only be regressed onto a stage"),
        ([{"name": "fitnet", "regressor": "never"}], r"regressor='never' must be one of auto, always"),
        ([{"name": "dkd", "temperature": 0}], r"temperature=0 must be a number > 0"),
        ([{"name": "ckd", "negatives": "queue"}], r"negatives='queue' must be one of"),
        ([{"name": "crd", "nce_momentum": 1.5}], r"nce_momentum=1.5 must be a number in \[0, 1\]"),
        ([{"name": "crd", "negatives": "other_class"}], r"needs every training label"),
        ([{"name": "at", "p": -1}], r"p=-1 must be a number > 0"),
    ],
)
def test_bad_term_parameters_are_config_errors(terms, message):
    with pytest.raises(ConfigError, match=message):
        build(terms)


def test_a_term_that_needs_a_teacher_refuses_to_build_without_one():
    from kdlab.config import load_config
    from kdlab.methods.build import build_distiller
    from method_helpers import tiny_student

    cfg = load_config(None, ['distill.terms=[{name: at}]'])
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_distiller(cfg, tiny_student(), None, num_classes=5, train_size=8, image_size=8, in_chans=3,
                        steps_per_epoch=1, device=torch.device("cpu"))


def _features(*shapes):
    stages = [torch.zeros(2, *s) for s in shapes]
    return Features(logits=torch.zeros(2, 3), embedding=torch.zeros(2, 4), stages=stages, preact_stages=stages)


def test_named_stages_resolve_against_the_network():
    three, five = _features((8, 8, 8), (16, 4, 4), (32, 2, 2)), _features(*[(4, 2, 2)] * 5)
    assert resolve_feature("middle", three, "hint", "teacher").index == 1
    assert resolve_feature("middle", five, "hint", "teacher").index == 2
    assert resolve_feature("last", five, "hint", "teacher").index == 4
    assert resolve_feature(-2, three, "hint", "teacher").index == 1
    assert resolve_feature("embedding", three, "hint", "teacher").kind == "embedding"


def test_all_stage_pairs_align_at_the_deepest_stage():
    vgg_like, mobilenet_like = _features(*[(4, 2, 2)] * 5), _features(*[(4, 2, 2)] * 4)
    assert stage_pairs("all", mobilenet_like, vgg_like) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert stage_pairs("all", vgg_like, vgg_like) == [(i, i) for i in range(5)]
    assert stage_pairs([1, -1], mobilenet_like, vgg_like) == [(1, 1), (3, 4)]


@pytest.mark.parametrize(
    "student, teacher",
    [
        ((16, 8, 8), (32, 4, 4)),  # stride-2 conv
        ((16, 4, 4), (32, 8, 8)),  # transposed conv
        ((16, 8, 8), (32, 8, 8)),  # 1x1 conv
        ((16, 6, 6), (32, 4, 4)),  # 3x3 valid conv
        ((16, 2, 2), (32, 8, 8)),  # resize + 1x1 conv
    ],
)
def test_conv_regressor_maps_student_shape_to_teacher_shape(student, teacher):
    regressor = ConvRegressor(student, teacher)
    assert regressor(torch.randn(2, *student)).shape == (2, *teacher)
