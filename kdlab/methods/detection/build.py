"""Config ``distill.terms`` of a detection run -> a :class:`DetectionDistiller`."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from kdlab.config import Config, ConfigError
from kdlab.methods.build import instantiate_terms, term_specs
from kdlab.methods.detection.base import DetectionBuildContext
from kdlab.methods.detection.distiller import DetectionDistiller


@torch.no_grad()
def fpn_shapes(detector: nn.Module, image_size: int, device: torch.device) -> list[tuple[int, int, int]]:
    """(C, H, W) of every FPN level for one image of ``image_size`` pixels, through the detector's transform."""
    was_training = detector.training
    detector.eval()  # BatchNorm statistics untouched by the dry run
    try:
        images, _ = detector.transform([torch.zeros(3, image_size, image_size, device=device)])
        features = detector.backbone(images.tensors)
    finally:
        detector.train(was_training)
    maps = [features] if isinstance(features, torch.Tensor) else list(features.values())
    return [tuple(int(d) for d in m.shape[1:]) for m in maps]  # type: ignore[misc]


def build_detection_distiller(
    cfg: Config,
    student: nn.Module,
    teacher: Optional[nn.Module],
    *,
    num_classes: int,
    image_size: int,
    steps_per_epoch: int,
    device: torch.device,
    extra: Optional[dict[str, Any]] = None,
) -> DetectionDistiller:
    specs = term_specs(cfg)
    for i, (cls, key, _, _) in enumerate(specs):
        if cls.needs_teacher and teacher is None:
            raise ConfigError(f"distill.terms[{i}] ({key}) needs a teacher: set teacher.name and teacher.checkpoint")
    if not cfg.distill.labels:
        raise ConfigError("distill.labels=false: label-free distillation is not defined for task: detection")
    uses_rois = any(cls.needs_teacher and "roi_logits" in cls.uses for cls, _, _, _ in specs)
    teacher_classes = getattr(teacher, "num_classes", None)
    if uses_rois and teacher_classes not in (None, num_classes):
        raise ConfigError(
            f"the teacher detector has {teacher_classes} object classes but the student {num_classes}: "
            "RoI-logit terms need the same classes (check teacher.num_classes / model.num_classes)"
        )
    wants_fpn = any(cls.needs_teacher for cls, _, _, _ in specs)
    ctx = DetectionBuildContext(
        student=student,
        teacher=teacher,
        num_classes=num_classes,
        image_size=image_size,
        student_fpn=fpn_shapes(student, image_size, device),
        teacher_fpn=fpn_shapes(teacher.model, image_size, device) if wants_fpn and teacher is not None else None,
        seed=cfg.trainer.seed,
        epochs=cfg.trainer.epochs,
        steps_per_epoch=steps_per_epoch,
        config=cfg,
        device=device,
        extra=dict(extra or {}),
    )
    return DetectionDistiller(student, instantiate_terms(specs, ctx, device), teacher=teacher, seed=cfg.trainer.seed)
