"""The detection Distiller: a torchvision Faster R-CNN student, its frozen teacher and loss terms.

One training step runs the student detector piece by piece (transform, backbone +
FPN, RPN, RoI sampling, box head) so that the loss terms can read what they need:
torchvision's own losses, the FPN maps, and the class logits of the sampled RoIs.
The teacher runs on exactly the student's transformed input tensor, and its box
head classifies exactly the student's sampled RoIs from its own FPN maps; its RPN
is never used. The contract towards the trainer is the classification
Distiller's: ``forward(batch) -> StepOutput`` with named terms and the total.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import fastrcnn_loss

from kdlab.methods.base import StepOutput, TermsOwner
from kdlab.methods.detection.base import DetectionStep, DetectionTerm
from kdlab.methods.detection.sampling import image_seed, install_seeded_samplers

#: torchvision's loss names -> the sub-term names kdlab logs
LOSS_NAMES = {
    "loss_objectness": "rpn_objectness",
    "loss_rpn_box_reg": "rpn_box",
    "loss_classifier": "roi_cls",
    "loss_box_reg": "roi_box",
}


class DetectionDistiller(TermsOwner):
    """Student detector + detection loss terms (+ a frozen teacher detector outside the module tree).

    Args:
        student: a torchvision ``FasterRCNN`` (``create_model("det:...")``).
        terms: ``(key, term, weight)`` triples.
        teacher: a :class:`~kdlab.engine.frozen_detector.FrozenDetector`, or None.
        seed: the run's seed; RPN and RoI sampling of image ``i`` in epoch ``e`` are seeded by (seed, e, i).
    """

    labels = True

    def __init__(
        self,
        student: nn.Module,
        terms: list[tuple[str, DetectionTerm, float]],
        teacher: Optional[nn.Module] = None,
        seed: int = 0,
    ) -> None:
        super().__init__(student, terms, teacher)
        self.seed = seed
        self._teacher_fpn = any(t.needs_teacher for t in self.terms.values())
        self._teacher_rois = any(t.needs_teacher and "roi_logits" in t.uses for t in self.terms.values())
        if self._teacher_fpn and teacher is None:
            names = [k for k, t in self.terms.items() if t.needs_teacher]
            raise ValueError(f"loss terms {names} need a teacher: set teacher.name and teacher.checkpoint")
        self._samplers = install_seeded_samplers(student)

    def _seed_samplers(self, index: Tensor, epoch: int) -> None:
        seeds = [image_seed(self.seed, epoch, int(i)) for i in index.tolist()]
        for sampler in self._samplers:
            sampler.set_images(seeds)

    def forward(self, batch: dict[str, Any], epoch: int = 0, progress: float = 0.0) -> StepOutput:
        student = self.student
        self._seed_samplers(batch["index"], epoch)
        try:
            images, targets = student.transform(batch["images"], batch["targets"])
            features = student.backbone(images.tensors)
            if isinstance(features, Tensor):
                features = OrderedDict([("0", features)])
            proposals, rpn_losses = student.rpn(images, features, targets)
            heads = student.roi_heads
            proposals, _, roi_labels, regression_targets = heads.select_training_samples(proposals, targets)
        finally:
            for sampler in self._samplers:
                sampler.clear()
        pooled = heads.box_roi_pool(features, proposals, images.image_sizes)
        class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, roi_labels, regression_targets)
        losses = {**rpn_losses, "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

        teacher_fpn = teacher_logits = None
        if self._teacher_fpn:
            teacher_fpn = self.teacher.features(images.tensors)
            if self._teacher_rois:
                teacher_logits = self.teacher.roi_class_logits(teacher_fpn, proposals, images.image_sizes)
        step = DetectionStep(
            losses={LOSS_NAMES.get(k, k): v for k, v in losses.items()},
            student_fpn=features,
            teacher_fpn=teacher_fpn,
            student_roi_logits=class_logits,
            teacher_roi_logits=teacher_logits,
            roi_labels=torch.cat(roi_labels),
            epoch=epoch,
            progress=progress,
            batch=batch,
        )
        values, total = self.weighted_terms(lambda term: step, progress, class_logits)
        return StepOutput(logits=None, terms=values, loss=total)
