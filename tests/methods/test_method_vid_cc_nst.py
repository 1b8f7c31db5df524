"""The vid, cc and nst terms: RepDistiller's modules, initialisations, stage pairs and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import cc_loss, nst_loss, vid_loss
from method_helpers import build, make_batch


def test_vid_builds_repdistillers_regressors_and_variance_five():
    vid = build([{"name": "vid"}]).terms["vid"]  # resnet8 student, wrn_16_2 teacher: 3 stages each
    assert vid.pairs == [(0, 0), (1, 1), (2, 2)]
    for regressor, log_scale in zip(vid.regressors, vid.log_scales):
        convs = [m for m in regressor if isinstance(m, torch.nn.Conv2d)]
        relus = [m for m in regressor if isinstance(m, torch.nn.ReLU)]
        assert len(convs) == 3 and len(relus) == 2 and all(c.bias is None and c.kernel_size == (1, 1) for c in convs)
        teacher_channels = convs[-1].out_channels
        assert convs[0].out_channels == convs[1].out_channels == teacher_channels  # mid = teacher channels
        assert log_scale.shape == (teacher_channels,)
        torch.testing.assert_close(F.softplus(log_scale) + 1e-5, torch.full_like(log_scale, 5.0))
    mid = build([{"name": "vid", "mid_channels": 4}]).terms["vid"]
    assert all(r[0].out_channels == 4 for r in mid.regressors)


def test_vid_sums_its_pairs_and_matches_the_loss_on_pooled_student_maps():
    distiller = build([{"name": "vid", "stages": [0, -1]}])
    batch = make_batch()
    out = distiller(batch)
    parts = sorted(k for k in out.terms if k.startswith("vid/"))
    assert parts == ["vid/s0_t0", "vid/s2_t2"]
    torch.testing.assert_close(out.terms["vid"], sum(out.terms[k] for k in parts))
    mean = build([{"name": "vid", "reduction": "mean"}])(batch)
    values = torch.stack([mean.terms[k] for k in sorted(k for k in mean.terms if k.startswith("vid/"))])
    torch.testing.assert_close(mean.terms["vid"], values.mean())


def test_vid_pools_the_larger_student_map_before_its_regressor():
    from kdlab.methods.terms.vid import VIDTerm

    class Probe:
        def __init__(self, stages):
            self.stages = stages

    class Ctx:
        student_probe = Probe([torch.zeros(2, 3, 8, 8)])
        teacher_probe = Probe([torch.zeros(2, 5, 4, 4)])

    term = VIDTerm(Ctx())  # type: ignore[arg-type]
    student, teacher = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)

    class Step:
        pass

    step = Step()
    step.student, step.teacher = Probe([student]), Probe([teacher])  # type: ignore[attr-defined]
    expected = vid_loss(term.regressors[0](F.adaptive_avg_pool2d(student, 4)), teacher, term.log_scales[0])
    torch.testing.assert_close(term(step), expected)  # type: ignore[arg-type]


def test_cc_projects_without_normalisation_and_trains_both_projections():
    distiller = build([{"name": "cc", "feat_dim": 8}])
    cc = distiller.terms["cc"]
    assert cc.embed_student.linear.out_features == cc.embed_teacher.linear.out_features == 8
    batch = make_batch()
    out = distiller(batch)
    student = distiller.student.forward_all(batch["image"]).embedding
    with torch.no_grad():
        teacher = distiller.teacher.forward_all(batch["image"]).embedding
    expected = cc_loss(cc.embed_student.linear(student), cc.embed_teacher.linear(teacher))
    torch.testing.assert_close(out.terms["cc"], expected.detach())
    out.loss.backward()
    for module in (cc.embed_student, cc.embed_teacher):
        assert module.linear.weight.grad is not None and bool(module.linear.weight.grad.abs().sum() > 0)
    assert cc.cacheable and build([{"name": "cc", "feature": -1, "feat_dim": 4}]).terms["cc"].cacheable is False


def test_nst_sums_its_pairs_and_matches_the_loss():
    distiller = build([{"name": "nst"}])
    batch = make_batch()
    out = distiller(batch)
    parts = sorted(k for k in out.terms if k.startswith("nst/"))
    assert parts == ["nst/s0_t0", "nst/s1_t1", "nst/s2_t2"]
    torch.testing.assert_close(out.terms["nst"], sum(out.terms[k] for k in parts))
    with torch.no_grad():
        s = distiller.student.forward_all(batch["image"]).stages
        t = distiller.teacher.forward_all(batch["image"]).stages
    torch.testing.assert_close(out.terms["nst"], nst_loss(s, t))
    assert list(distiller.terms["nst"].parameters()) == []


@pytest.mark.parametrize("terms", [
    [{"name": "vid", "stages": [0, 5]}],
    [{"name": "nst", "reduction": "max"}],
    [{"name": "vid", "init_pred_var": 0}],
    [{"name": "cc", "feat_dim": 0}],
])
def test_bad_parameters_fail_at_build_time(terms):
    with pytest.raises(Exception) as info:
        build(terms)
    assert any(word in str(info.value) for word in ("stages", "reduction", "init_pred_var", "feat_dim")), info.value


def test_terms_are_finite_under_bfloat16_autocast():
    batch = make_batch()
    for terms in ([{"name": "vid"}], [{"name": "cc", "feat_dim": 8}], [{"name": "nst"}]):
        distiller = build(terms)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = distiller(batch)
        assert out.loss.dtype == torch.float32 and math.isfinite(float(out.loss.detach())), terms
