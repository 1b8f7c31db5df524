"""The classification terms reviewkd and ofd: which features they read, their modules, warm-up, margins."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdlab.config import ConfigError, load_config
from kdlab.engine.teacher import FrozenTeacher
from kdlab.losses import hcl_loss, ofd_loss, ofd_margin
from kdlab.methods.base import all_terms, term_registry
from kdlab.methods.build import term_specs
from kdlab.methods.modules.review import AttentionFusion
from kdlab.models import create_model
from kdlab.models.preact_bn import preact_batchnorms
from method_helpers import build, make_batch


def _net(name: str, seed: int, classes: int = 5):
    torch.manual_seed(seed)
    return create_model(name, num_classes=classes)


def _randomise_bns(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.randn(module.num_features, generator=g)
            module.bias.data = torch.randn(module.num_features, generator=g)
            module.running_mean.data = torch.randn(module.num_features, generator=g) * 0.1
            module.running_var.data = torch.rand(module.num_features, generator=g) + 0.5


# --- reviewkd -----------------------------------------------------------------------------------------


def test_reviewkd_levels_are_student_stages_plus_pooled_against_teacher_preacts_plus_pooled():
    student, teacher = _net("resnet8", 1), FrozenTeacher(_net("wrn_16_2", 2))
    distiller = build([{"name": "reviewkd", "warmup": 0}], student=student, teacher=teacher)
    term = distiller.terms["reviewkd"]
    assert term.pairs == [(0, 0), (1, 1), (2, 2)]
    assert term.fusion.student_channels == [16, 32, 64, 64]
    assert term.fusion.teacher_channels == [32, 64, 128, 128]
    assert term.fusion.mid_channels == 64  # min(512, student embedding width)
    batch = make_batch()
    distiller.train()
    out = distiller(batch, epoch=0, progress=0.0)
    # an independent wiring: the same fusion modules called level by level, deepest first
    torch.manual_seed(0)
    s = student.forward_all(batch["image"])
    with torch.no_grad():
        t = teacher.model.eval().forward_all(batch["image"])
    levels = [*s.stages, s.embedding[:, :, None, None]]
    targets = [*t.preact_stages, t.embedding[:, :, None, None]]
    outputs, residual = [None] * 4, None
    for i in (3, 2, 1, 0):
        outputs[i], residual = term.fusion.fusions[i](levels[i], residual)
    expected = hcl_loss(outputs, targets)
    assert float(out.terms["reviewkd"]) == pytest.approx(float(expected), rel=1e-5)


def test_reviewkd_resizes_to_the_teacher_sizes_and_can_read_student_preacts():
    # MobileNetV2 at 8 px: stages 4,2,1,1 (stride 2 first); vgg8: 8,4,2,1,1 -> the deepest 4 of vgg are paired
    student, teacher = _net("MobileNetV2", 1), FrozenTeacher(_net("vgg8", 2))
    term = build([{"name": "reviewkd", "student_preact": True}], student=student, teacher=teacher).terms["reviewkd"]
    assert term.pairs == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert term.out_sizes == [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert term.fusion.mid_channels == 512 and term.uses == {"preact_stages", "embedding"}
    vgg_pair = build([{"name": "reviewkd", "stages": [1, 2, 3, 4]}], student=_net("vgg8", 3),
                     teacher=FrozenTeacher(_net("vgg8", 4))).terms["reviewkd"]
    assert vgg_pair.pairs == [(1, 1), (2, 2), (3, 3), (4, 4)] and len(vgg_pair.fusion.fusions) == 5
    distiller = build([{"name": "ce"}, {"name": "reviewkd"}], student=student, teacher=teacher)
    out = distiller(make_batch(size=8), epoch=30, progress=30.0)
    assert torch.isfinite(out.loss)


def test_attention_fusion_out_size_resizes_before_the_output_convolution():
    torch.manual_seed(0)
    block = AttentionFusion(6, 4, 3, fuse=True).eval()
    x, residual = torch.randn(2, 6, 4, 4), torch.randn(2, 4, 2, 2)
    out, fused = block(x, residual, out_size=(8, 8))
    _, plain = block(x, residual)
    assert out.shape == (2, 3, 8, 8) and fused.shape == (2, 4, 8, 8)
    up = F.interpolate(plain, size=(8, 8), mode="nearest")
    torch.testing.assert_close(fused, up)
    torch.testing.assert_close(out, block.output(up))


def test_reviewkd_warmup_is_the_official_zero_based_ramp():
    term = build([{"name": "reviewkd"}]).terms["reviewkd"]
    assert term.warmup == 20
    assert term.weight_scale(0.0) == 0.0 and term.weight_scale(0.99) == 0.0
    assert term.weight_scale(1.0) == pytest.approx(1 / 20)
    assert term.weight_scale(10.5) == pytest.approx(10 / 20)
    assert term.weight_scale(20.0) == 1.0 and term.weight_scale(239.0) == 1.0
    assert build([{"name": "reviewkd", "warmup": 0}]).terms["reviewkd"].weight_scale(0.0) == 1.0


def test_reviewkd_name_is_shared_with_the_detection_term_per_task():
    classification = term_registry("classification")["reviewkd"]
    detection = term_registry("detection")["reviewkd"]
    assert classification is not detection and classification.task == "classification"
    assert detection.task == "detection" and term_registry()["reviewkd"] is classification
    assert {classification, detection} <= set(all_terms())
    cfg = load_config(None, ['distill.terms=[{name: ce}, {name: reviewkd, weight: 5.0}]'])
    assert term_specs(cfg)[1][0] is classification
    with pytest.raises(ConfigError, match="not a parameter of term reviewkd"):
        build([{"name": "reviewkd", "mid_channel": 4}])
    with pytest.raises(ConfigError, match="roi_kd.*detection term but task=classification"):
        term_specs(load_config(None, ['distill.terms=[{name: roi_kd}]']))


# --- ofd ----------------------------------------------------------------------------------------------


def test_ofd_margins_come_from_the_teachers_bns_and_the_loss_is_the_official_sum():
    student, teacher_net = _net("resnet8", 1), _net("wrn_16_2", 2)
    _randomise_bns(teacher_net, 7)
    teacher = FrozenTeacher(teacher_net)
    distiller = build([{"name": "ofd"}], student=student, teacher=teacher)
    term = distiller.terms["ofd"]
    assert term.pairs == [(0, 0), (1, 1), (2, 2)]
    bns = preact_batchnorms(teacher_net)
    for margin, bn in zip(term.loss.margins, bns):
        torch.testing.assert_close(margin, ofd_margin(bn.weight.detach(), bn.bias.detach()))
    assert {k for k in distiller.state_dict() if "margin" in k} == {f"terms.ofd.loss.margin{i}" for i in range(3)}
    conv = term.connectors[0][0]
    assert conv.bias is None and conv.kernel_size == (1, 1)
    assert abs(float(conv.weight.std()) - (2 / 32) ** 0.5) < 0.05
    batch = make_batch()
    distiller.eval()
    out = distiller(batch)
    with torch.no_grad():
        s = student.eval().forward_all(batch["image"]).preact_stages
        t = teacher_net.eval().forward_all(batch["image"]).preact_stages
        students = [c(x) for c, x in zip(term.connectors, s)]
    expected = ofd_loss(students, t, [ofd_margin(bn.weight, bn.bias) for bn in bns])
    assert float(out.terms["ofd"]) == pytest.approx(float(expected), rel=1e-5)


def test_ofd_pools_a_larger_teacher_map_and_refuses_teachers_without_bns():
    # at 8 px the vgg8 teacher's maps are 8,4,2,1,1 and ShuffleV1's 4,2,1: the deepest three of vgg8 are paired
    student, teacher = _net("ShuffleV1", 1), FrozenTeacher(_net("vgg8", 2))
    distiller = build([{"name": "ce"}, {"name": "ofd"}], student=student, teacher=teacher)
    assert distiller.terms["ofd"].pairs == [(0, 2), (1, 3), (2, 4)]
    assert torch.isfinite(distiller(make_batch()).loss)
    # MobileNetV2's maps are 4,2,1,1, resnet8's 8,4,2: the teacher maps are larger, average-pooled to the student's
    teacher_net = _net("resnet8", 4)
    small = build([{"name": "ofd"}], student=_net("MobileNetV2", 3), teacher=FrozenTeacher(teacher_net))
    term = small.terms["ofd"]
    assert term.pairs == [(1, 0), (2, 1), (3, 2)]
    small.eval()
    batch = make_batch()
    value = small(batch).terms["ofd"]
    with torch.no_grad():
        s = small.student.forward_all(batch["image"]).preact_stages
        t = teacher_net.eval().forward_all(batch["image"]).preact_stages
        students = [c(s[i]) for c, (i, _) in zip(term.connectors, term.pairs)]
        pooled = [F.avg_pool2d(x, x.shape[-1] // st.shape[-1]) for x, st in zip(t, students)]  # 8->2, 4->1, 2->1
        assert [x.shape[-1] for x in t] == [8, 4, 2] and [x.shape[-1] for x in students] == [2, 1, 1]
    torch.testing.assert_close(value, ofd_loss(students, pooled, term.loss.margins), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"distill.terms\[0\] \(ofd\): preact_batchnorms: ShuffleNetV2"):
        build([{"name": "ofd"}], teacher=FrozenTeacher(_net("ShuffleV2", 5)))
    with pytest.raises(ConfigError, match="min_cdf"):
        build([{"name": "ofd", "min_cdf": 2}])


@pytest.mark.parametrize("name", ["reviewkd", "ofd"])
def test_terms_under_bf16_autocast_give_a_float32_value_close_to_fp32(name):
    distiller = build([{"name": name, **({"warmup": 0} if name == "reviewkd" else {})}])
    distiller.eval()
    batch = make_batch()
    with torch.no_grad():
        full = float(distiller(batch).terms[name])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = distiller(batch).terms[name]
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert float(low) == pytest.approx(full, rel=0.1)
