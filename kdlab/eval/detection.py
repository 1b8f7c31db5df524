r"""COCO mAP of object detections, computed with pycocotools.

pycocotools is an optional dependency (``pip install 'kdlab[detection]'``). It is
imported inside :func:`coco_map` only, so importing this module never needs it;
without it :func:`coco_map` raises :class:`DetectionEvalUnavailable`.

Metrics (pycocotools' ``COCOeval.stats[0..5]``, bounding boxes, at most 100
detections per image), returned as **fractions in [0, 1]**, not AP points:

``map``         AP averaged over the 10 IoU thresholds :math:`t \in \{0.50, 0.55, \dots, 0.95\}`
``map50``       AP at IoU 0.50
``map75``       AP at IoU 0.75
``map_small``   AP@[.50:.95] over ground truth of area :math:`< 32^2`
``map_medium``  AP@[.50:.95] over ground truth of area in :math:`[32^2, 96^2]`
``map_large``   AP@[.50:.95] over ground truth of area :math:`> 96^2`

For one category, one IoU threshold t and one area range, AP is the 101-point
interpolated area under the precision/recall curve of the score-sorted detections,

.. math::

    AP_t = \frac{1}{101} \sum_{r \in \{0, 0.01, \dots, 1\}} \max_{\tilde r \ge r} p(\tilde r),

where a detection is a true positive when it is matched (greedily, by score) to a
not yet matched ground-truth box of its category with :math:`IoU \ge t`. Each
metric is the mean of :math:`AP_t` over the categories (and thresholds) that
have ground truth. Crowd ground truth (``iscrowd=1``) is never required to be
found, and detections matched to it are neither true nor false positives.

Undefined metrics are NaN. pycocotools reports -1 for a metric with no ground
truth in its area range (e.g. ``map_large`` on a data set without large objects);
here that is ``float("nan")``, never -1 (which would corrupt averages over runs)
and never 0 (which would read as "found nothing"). Aggregate with NaN-aware means.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["METRIC_KEYS", "DetectionEvalUnavailable", "coco_map", "to_coco_detections"]

METRIC_KEYS: tuple[str, ...] = ("map", "map50", "map75", "map_small", "map_medium", "map_large")

_INSTALL_HINT = "COCO mAP needs pycocotools: pip install 'kdlab[detection]'"


class DetectionEvalUnavailable(ImportError):
    """pycocotools (the optional ``kdlab[detection]`` extra) cannot be imported."""

    def __init__(self, message: str = _INSTALL_HINT) -> None:
        super().__init__(message)


def _pycocotools() -> tuple[Any, Any]:
    """``(COCO, COCOeval)``, imported now; :class:`DetectionEvalUnavailable` when missing."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:
        raise DetectionEvalUnavailable() from err
    return COCO, COCOeval


def _as_list(value: Any) -> list[Any]:
    """A tensor, numpy array or sequence as (nested) Python lists of numbers."""
    if hasattr(value, "detach"):  # torch.Tensor (any dtype, any device)
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.double()
    if hasattr(value, "tolist"):
        return list(value.tolist())
    return [list(v) if isinstance(v, (list, tuple)) else v for v in value]


def to_coco_detections(
    image_ids: Sequence[int], outputs: Sequence[Mapping[str, Any]], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """Torchvision detector outputs as COCO result records.

    Args:
        image_ids: the COCO image id of each image, in the order of ``outputs``.
        outputs: one dict per image, as torchvision detectors return in eval mode:
            ``boxes`` (N, 4) as :math:`(x_1, y_1, x_2, y_2)`, ``labels`` (N,) in
            ``1..K`` (0 is the background class), ``scores`` (N,). Tensors, numpy
            arrays or lists.
        category_ids: the COCO category id of each of the K labels:
            label k maps to ``category_ids[k - 1]`` (COCO's ids are not contiguous).

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` with
        :math:`(x, y, w, h) = (x_1, y_1, x_2 - x_1, y_2 - y_1)`, Python ints and floats,
        images in the given order and each image's detections in its order.

    Raises:
        ValueError: lengths that disagree, boxes that are not (N, 4), or a label
            outside ``1..K``.
    """
    ids = [int(i) for i in _as_list(image_ids)]
    if len(ids) != len(outputs):
        raise ValueError(
            f"to_coco_detections: got {len(ids)} image ids for {len(outputs)} outputs; need one id per output"
        )
    categories = [int(c) for c in _as_list(category_ids)]
    num_classes = len(categories)
    records: list[dict[str, Any]] = []
    for image_id, output in zip(ids, outputs):
        missing = [key for key in ("boxes", "labels", "scores") if key not in output]
        if missing:
            raise ValueError(f"to_coco_detections: output of image {image_id} lacks {missing}")
        boxes = _as_list(output["boxes"])
        labels = [int(v) for v in _as_list(output["labels"])]
        scores = [float(v) for v in _as_list(output["scores"])]
        if any(len(box) != 4 for box in boxes):
            raise ValueError(f"to_coco_detections: boxes of image {image_id} must be (N, 4) xyxy")
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(
                f"to_coco_detections: image {image_id} has {len(boxes)} boxes, {len(labels)} labels "
                f"and {len(scores)} scores; need the same number of each"
            )
        for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
            if not 1 <= label <= num_classes:
                raise ValueError(
                    f"to_coco_detections: label {label} of image {image_id} is outside 1..{num_classes} "
                    f"({num_classes} category ids given; 0 is the background)"
                )
            x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
            records.append(
                {
                    "image_id": image_id,
                    "category_id": categories[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    return records


def _ground_truth_copy(ground_truth: Mapping[str, Any]) -> dict[str, Any]:
    """A checked copy of a COCO ground-truth dict with ``area``/``iscrowd``/``id`` filled in.

    Missing ``area`` becomes :math:`w \\cdot h` of the box, missing ``iscrowd`` 0, missing
    ``id`` a fresh id above the largest given one. The caller's dict is never modified.
    """
    missing = [key for key in ("images", "annotations", "categories") if key not in ground_truth]
    if missing:
        raise ValueError(f"coco_map: ground_truth lacks {missing}; need a COCO-format dict")
    annotations = []
    given_ids = [ann["id"] for ann in ground_truth["annotations"] if "id" in ann]
    if len(set(given_ids)) != len(given_ids):
        raise ValueError("coco_map: ground-truth annotation ids must be unique")
    next_id = max((int(i) for i in given_ids), default=0) + 1
    for ann in ground_truth["annotations"]:
        lacking = [key for key in ("image_id", "category_id", "bbox") if key not in ann]
        if lacking:
            raise ValueError(f"coco_map: ground-truth annotation {dict(ann)!r} lacks {lacking}")
        copy = dict(ann)
        copy["bbox"] = [float(v) for v in ann["bbox"]]
        if "area" not in copy:
            copy["area"] = copy["bbox"][2] * copy["bbox"][3]
        if "iscrowd" not in copy:
            copy["iscrowd"] = 0
        if "id" not in copy:
            copy["id"] = next_id
            next_id += 1
        annotations.append(copy)
    result = {key: value for key, value in ground_truth.items() if key not in ("images", "annotations", "categories")}
    result["images"] = [dict(image) for image in ground_truth["images"]]
    result["annotations"] = annotations
    result["categories"] = [dict(category) for category in ground_truth["categories"]]
    return result


def _check_detections(detections: Sequence[Mapping[str, Any]], gt: Mapping[str, Any]) -> None:
    image_ids = {image["id"] for image in gt["images"]}
    category_ids = {category["id"] for category in gt["categories"]}
    for det in detections:
        lacking = [key for key in ("image_id", "category_id", "bbox", "score") if key not in det]
        if lacking:
            raise ValueError(f"coco_map: detection {dict(det)!r} lacks {lacking}")
    unknown_images = sorted({det["image_id"] for det in detections} - image_ids)
    if unknown_images:
        raise ValueError(f"coco_map: detections for image ids {unknown_images[:10]} not in the ground truth")
    unknown_categories = sorted({det["category_id"] for det in detections} - category_ids)
    if unknown_categories:
        raise ValueError(
            f"coco_map: detections with category ids {unknown_categories[:10]} not among the ground truth's "
            f"categories {sorted(category_ids)[:10]}{'...' if len(category_ids) > 10 else ''}"
        )


def coco_map(ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """COCO bounding-box AP of ``detections`` against ``ground_truth`` (see the module docstring).

    Args:
        ground_truth: a COCO-format dict ``{"images": [{"id", "width", "height", ...}],
            "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area",
            "iscrowd"}], "categories": [{"id", "name"}]}``. Missing ``area`` is taken as
            :math:`w \\cdot h`, missing ``iscrowd`` as 0 (on a copy; the dict is not modified).
        detections: COCO result records, e.g. from :func:`to_coco_detections`
            (not modified either).

    Returns:
        ``{key: value for key in METRIC_KEYS}``, fractions in [0, 1]; NaN for a metric
        with no ground truth (pycocotools' -1). With no detections at all every defined
        metric is 0.0 (pycocotools' ``loadRes`` rejects an empty list, so an empty
        result set is evaluated instead).

    Raises:
        DetectionEvalUnavailable: pycocotools is not installed.
        ValueError: malformed ground truth, or detections for image or category ids
            that the ground truth does not have.
    """
    COCO, COCOeval = _pycocotools()
    gt_dict = _ground_truth_copy(ground_truth)
    _check_detections(detections, gt_dict)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        if detections:
            results = [
                {
                    "image_id": det["image_id"],
                    "category_id": det["category_id"],
                    "bbox": [float(v) for v in det["bbox"]],
                    "score": float(det["score"]),
                }
                for det in detections
            ]
            dt = gt.loadRes(results)
        else:
            dt = COCO()
            dt.dataset = {
                "images": list(gt_dict["images"]),
                "annotations": [],
                "categories": list(gt_dict["categories"]),
            }
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(v) for v in evaluator.stats[: len(METRIC_KEYS)]]
    return {key: (math.nan if value < 0 else value) for key, value in zip(METRIC_KEYS, stats)}
