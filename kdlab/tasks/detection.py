"""Object detection: torchvision Faster R-CNN students and teachers, COCO/VOC data, COCO mAP.

Batches are lists of (3, H, W) images in [0, 1] with per-image box targets; the
detector's own transform resizes and normalises them. Evaluation is COCO mAP
(pycocotools), and ``val_map`` selects ``best.pt`` by default.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from kdlab.config import ConfigError
from kdlab.tasks.base import EvalParts, Task

DET_PREFIX = "det:"


def detector_kwargs(kwargs: dict[str, Any], data: Any) -> dict[str, Any]:
    """Model kwargs with an input size that fits the data where the config sets none.

    Images are never upsampled by default: the shortest side of the smallest image
    and the longest side of the largest (torchvision's 800/1333 would blow a 96-px
    canvas up to 800 px). The COCO recipes set min_size/max_size explicitly.
    """
    out = dict(kwargs)
    out.setdefault("min_size", int(data.min_image_side))
    out.setdefault("max_size", max(int(data.image_size), int(out["min_size"])))
    return out


class DetectionTask(Task):
    name = "detection"
    summary_keys = ("val_map", "val_map50")

    def build_data(
        self, cfg: Any, *, device: torch.device, rank: int, world_size: int, channels_last: bool, progress: bool
    ) -> Any:
        from kdlab.data.detection import build_detection_data

        if cfg.data.name not in ("coco", "voc"):
            raise ConfigError(f"task: detection reads data.name coco or voc, got data.name={cfg.data.name}")
        if cfg.distill.teacher_cache:
            raise ConfigError("distill.teacher_cache is not supported for task: detection (the teacher runs live)")
        return build_detection_data(
            cfg.data, seed=cfg.trainer.seed, device=device, rank=rank, world_size=world_size, progress=progress
        )

    def build_networks(self, cfg: Any, data: Any, *, unsafe_load: bool) -> tuple[nn.Module, Optional[nn.Module]]:
        from kdlab.models import create_model

        for key, value in (("model.frozen", cfg.model.frozen), ("teacher.compile", cfg.teacher.compile),
                           ("teacher.embedding_only", cfg.teacher.embedding_only)):
            if value:
                raise ConfigError(f"{key}=true is not supported for task: detection")
        for key, value in (("teacher.mean", cfg.teacher.mean), ("teacher.std", cfg.teacher.std)):
            if value is not None:
                raise ConfigError(
                    f"{key} is not used for task: detection: a detector normalises its input itself "
                    "(model.kwargs / teacher.kwargs image_mean and image_std)"
                )
        if not cfg.model.name.startswith(DET_PREFIX):
            raise ConfigError(f"task: detection needs a detector: model.name={cfg.model.name} has no det: prefix")
        classes = cfg.model.num_classes or data.num_classes
        if classes != data.num_classes:
            raise ConfigError(f"model.num_classes={classes} but the data has {data.num_classes} object classes")
        try:
            student = create_model(
                cfg.model.name, num_classes=classes, checkpoint=cfg.model.checkpoint, unsafe_load=unsafe_load,
                **detector_kwargs(cfg.model.kwargs, data),
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model ({cfg.model.name}): {err}") from None
        return student, self._teacher(cfg, data, student, unsafe_load)

    def _teacher(self, cfg: Any, data: Any, student: nn.Module, unsafe_load: bool) -> Optional[nn.Module]:
        if cfg.teacher.name is None and cfg.teacher.checkpoint is None:
            return None
        from kdlab.config.teacher_source import resolve_teacher_source
        from kdlab.engine.builders import teacher_precision
        from kdlab.engine.frozen_detector import FrozenDetector
        from kdlab.models import create_model
        from kdlab.models.detection import transform_signature

        name, checkpoint, kwargs, classes = resolve_teacher_source(cfg)
        if not name.startswith(DET_PREFIX):
            raise ConfigError(f"task: detection needs a detector teacher: teacher.name={name} has no det: prefix")
        try:
            model = create_model(
                name, num_classes=classes or data.num_classes, checkpoint=checkpoint, unsafe_load=unsafe_load,
                **detector_kwargs(kwargs, data),
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"teacher ({name}, {checkpoint}): {err}") from None
        mine, theirs = transform_signature(student), transform_signature(model)
        if mine != theirs:
            raise ConfigError(
                "the teacher must see exactly the student's input tensors, but their transforms differ: "
                f"student {cfg.model.name} {_describe(mine)} vs teacher {name} {_describe(theirs)} "
                "(set the same min_size, max_size, image_mean and image_std in model.kwargs and teacher.kwargs)"
            )
        return FrozenDetector(model, precision=teacher_precision(cfg))

    def build_method(
        self, cfg: Any, student: nn.Module, teacher: Optional[nn.Module], data: Any, device: torch.device
    ) -> tuple[nn.Module, Any]:
        from kdlab.methods.detection.build import build_detection_distiller

        method = build_detection_distiller(
            cfg, student, teacher, num_classes=data.num_classes, image_size=data.image_size,
            steps_per_epoch=data.train.steps_per_epoch, device=device,
        )
        method.to(device)
        return method, data

    def evaluate(self, parts: EvalParts) -> dict[str, Any]:
        from kdlab import collectives
        from kdlab.engine.detection_eval import detection_metrics

        collectives.broadcast_buffers(parts.student)  # rank 0's BatchNorm statistics, as checkpointed
        return detection_metrics(parts.student, parts.data, autocast=parts.autocast)


def _describe(signature: Any) -> str:
    return "(" + ", ".join(str(v) for v in signature) + ")" if isinstance(signature, tuple) else str(signature)
