"""The detection Distiller: RoIs, the frozen teacher, sampling and composition of terms."""

from __future__ import annotations

import copy

import pytest
import torch

from kdlab.methods.detection.det import DetectorLossTerm
from kdlab.methods.detection.distiller import DetectionDistiller
from kdlab.methods.detection.fpn_fitnet import FPNFitNetTerm
from kdlab.methods.detection.roi_logits import RoICKDTerm, RoIDKDTerm, RoIKDTerm

from det_helpers import batch, build_context, frozen_teacher, tiny_detector


def distiller(student=None, teacher=None, terms=("det", "roi_ckd")) -> DetectionDistiller:
    student = student if student is not None else tiny_detector(0)
    teacher = teacher if teacher is not None else frozen_teacher()
    ctx = build_context(student, teacher)
    classes = {"det": DetectorLossTerm, "roi_ckd": RoICKDTerm, "roi_kd": RoIKDTerm, "roi_dkd": RoIDKDTerm,
               "fpn_fitnet": FPNFitNetTerm}
    built = [(name, classes[name](ctx), 0.1 if name == "roi_ckd" else 1.0) for name in terms]
    return DetectionDistiller(student, built, teacher=teacher, seed=0).train()


def test_det_term_logs_torchvision_losses_as_sub_terms() -> None:
    out = distiller(terms=("det",))(batch())
    parts = {k: float(v) for k, v in out.terms.items()}
    assert set(parts) == {"det", "det/rpn_objectness", "det/rpn_box", "det/roi_cls", "det/roi_box"}
    assert parts["det"] == pytest.approx(sum(v for k, v in parts.items() if k.startswith("det/")), rel=1e-6)
    assert float(out.loss) == pytest.approx(parts["det"], rel=1e-6)


def test_total_is_the_weighted_sum_of_terms() -> None:
    out = distiller(terms=("det", "roi_ckd", "roi_kd", "roi_dkd", "fpn_fitnet"))(batch())
    expected = sum(float(out.terms[k]) * (0.1 if k == "roi_ckd" else 1.0)
                   for k in ("det", "roi_ckd", "roi_kd", "roi_dkd", "fpn_fitnet"))
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert all(torch.isfinite(v) for v in out.terms.values())


def test_teacher_rpn_does_not_change_roi_ckd() -> None:
    """The teacher classifies the student's sampled RoIs: its own RPN never runs."""
    teacher = frozen_teacher()
    first = distiller(teacher=teacher)(batch())
    for p in teacher.model.rpn.parameters():
        p.data.normal_()
    second = distiller(teacher=teacher)(batch())
    assert torch.equal(first.terms["roi_ckd"], second.terms["roi_ckd"])


def test_teacher_box_head_changes_roi_ckd() -> None:
    teacher = frozen_teacher()
    first = distiller(teacher=teacher)(batch())
    with torch.no_grad():
        teacher.model.roi_heads.box_predictor.cls_score.weight.mul_(3.0)
    assert not torch.equal(first.terms["roi_ckd"], distiller(teacher=teacher)(batch()).terms["roi_ckd"])


def test_teacher_logits_are_computed_on_the_student_rois() -> None:
    seen = {}
    teacher = frozen_teacher()
    original = teacher.roi_class_logits

    def spy(features, boxes, sizes):
        seen["boxes"] = [b.clone() for b in boxes]
        return original(features, boxes, sizes)

    teacher.roi_class_logits = spy
    student = tiny_detector(0)
    method = distiller(student=student, teacher=teacher)
    captured = {}
    pool = student.roi_heads.box_roi_pool

    def keep(module, args):
        captured.setdefault("boxes", [b.clone() for b in args[1]])

    hook = pool.register_forward_pre_hook(keep)
    try:
        method(batch())
    finally:
        hook.remove()
    assert len(seen["boxes"]) == 2
    assert all(torch.equal(a, b) for a, b in zip(seen["boxes"], captured["boxes"]))


def test_no_gradient_reaches_the_teacher_and_its_batchnorm_stays() -> None:
    teacher = frozen_teacher()
    buffers = copy.deepcopy({k: v for k, v in teacher.model.state_dict().items()})
    method = distiller(teacher=teacher, terms=("det", "roi_ckd", "fpn_fitnet"))
    method.train()  # the parent's train() must not reach the teacher
    out = method(batch())
    out.loss.backward()
    assert not teacher.training and not teacher.model.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher.model.state_dict()[k]) for k, v in buffers.items())
    student_grads = [p.grad for p in method.student.parameters() if p.grad is not None]
    assert student_grads and any(float(g.abs().sum()) > 0 for g in student_grads)


def test_images_without_boxes_and_batches_of_one() -> None:
    method = distiller(terms=("det", "roi_ckd", "roi_dkd"))
    for data in (batch(2, empty=(0, 1)), batch(1), batch(1, empty=(0,))):
        out = method(data)
        assert all(torch.isfinite(v) for v in out.terms.values()), out.terms
        out.loss.backward()


def test_sampling_is_a_function_of_image_and_epoch_not_of_batch() -> None:
    """Image 1 samples the same RoIs alone or next to image 0 (what makes 2 ranks equal 1 process)."""
    rois = {}
    student = tiny_detector(0)
    student.eval()  # no BatchNorm batch statistics: proposals then depend on the image alone
    student.roi_heads.train()
    student.rpn.train()
    method = distiller(student=student, terms=("det",))
    student.backbone.eval()

    def capture(name):
        def hook(module, args):
            rois[name] = [b.clone() for b in args[1]]
        return hook

    pair = batch(2)
    single = {"images": pair["images"][1:], "targets": pair["targets"][1:], "index": pair["index"][1:],
              "image_id": pair["image_id"][1:]}
    for name, data in (("pair", pair), ("single", single)):
        handle = student.roi_heads.box_roi_pool.register_forward_pre_hook(capture(name))
        try:
            method.forward(data, epoch=3)
        finally:
            handle.remove()
    assert torch.equal(rois["pair"][1], rois["single"][0])
    handle = student.roi_heads.box_roi_pool.register_forward_pre_hook(capture("later"))
    try:
        method.forward(single, epoch=4)
    finally:
        handle.remove()
    assert not torch.equal(rois["later"][0], rois["single"][0])  # another epoch draws other RoIs


def test_reviewkd_term_trains_the_fusion_and_composes_with_roi_ckd() -> None:
    from kdlab.methods.detection.reviewkd import ReviewKDDetectionTerm

    student, teacher = tiny_detector(0), frozen_teacher()
    ctx = build_context(student, teacher)
    review = ReviewKDDetectionTerm(ctx, mid_channels=8)
    method = DetectionDistiller(
        student, [("det", DetectorLossTerm(ctx), 1.0), ("reviewkd", review, 1.2), ("roi_ckd", RoICKDTerm(ctx), 0.1)],
        teacher=teacher,
    ).train()
    out = method(batch())
    assert float(out.terms["reviewkd"]) > 0
    out.loss.backward()
    assert all(p.grad is not None for p in review.parameters())
