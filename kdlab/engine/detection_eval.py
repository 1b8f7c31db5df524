"""COCO mAP of a detector on an evaluation split, shared by the trainer and ``kdlab eval``."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import torch
from torch import nn

from kdlab import collectives
from kdlab.eval.detection import METRIC_KEYS, coco_map, to_coco_detections


@torch.no_grad()
def detect(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    category_ids: list[int],
    *,
    autocast: Optional[torch.autocast] = None,
) -> list[dict[str, Any]]:
    """COCO-format detections of ``model`` (eval mode) on every batch of this rank's shard."""
    was_training = model.training
    model.eval()
    found: list[dict[str, Any]] = []
    try:
        for batch in batches:
            if autocast is not None:
                with autocast:
                    outputs = model(batch["images"])
            else:
                outputs = model(batch["images"])
            outputs = [{k: v.detach().float().cpu() if k != "labels" else v.cpu() for k, v in o.items()}
                       for o in outputs]
            found.extend(to_coco_detections(batch["image_id"].tolist(), outputs, category_ids))
    finally:
        model.train(was_training)
    return found


def detection_metrics(
    model: nn.Module,
    data: Any,
    *,
    autocast: Optional[torch.autocast] = None,
    prefix: str = "val_",
) -> dict[str, float]:
    """``val_map``, ``val_map50``, ... (fractions in [0, 1]); under DDP every rank's detections are gathered
    and evaluated once, on rank 0, and every rank returns that result."""
    detections = detect(model, data.eval, data.category_ids, autocast=autocast)
    if collectives.is_distributed():
        gathered = collectives.all_gather_objects(detections)
        detections = [d for part in gathered for d in part]
        result = coco_map(data.eval_ground_truth, detections) if collectives.is_main_process() else None
        result = collectives.all_gather_objects(result)[0]
    else:
        result = coco_map(data.eval_ground_truth, detections)
    return {f"{prefix}{key}": float(result[key]) for key in METRIC_KEYS}
