"""coco_map / to_coco_detections against handmade cases and pycocotools called directly."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

from kdlab.eval.detection import METRIC_KEYS, DetectionEvalUnavailable, coco_map, to_coco_detections

needs_pycocotools = pytest.mark.skipif(
    importlib.util.find_spec("pycocotools") is None, reason="pycocotools not installed (kdlab[detection])"
)

EXACT = 1e-9  # pycocotools averages 101 recall points: a perfect AP comes out as 0.9999999999999999


def ground_truth(annotations: list[dict[str, Any]], images: int = 1, categories: tuple[int, ...] = (1,)) -> dict:
    return {
        "images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(1, images + 1)],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"c{c}"} for c in categories],
    }


def box(ann_id: int, image_id: int, category_id: int, bbox: list[float], iscrowd: int = 0) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": iscrowd,
    }


def detection(image_id: int, category_id: int, bbox: list[float], score: float = 1.0) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def pycocotools_directly(gt: dict, detections: list[dict], tmp_path: Path) -> list[float]:
    """The usual way: annotation file on disk, COCO(path), loadRes, COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(path))
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats[:6]]


def same_as_pycocotools(result: dict[str, float], stats: list[float]) -> None:
    for key, value in zip(METRIC_KEYS, stats):
        if value == -1:
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(value, abs=1e-12), key


# One image; boxes of every COCO area range: small 10x10, medium 50x40, large 120x100.
MIXED = [
    box(1, 1, 1, [5, 5, 10, 10]),
    box(2, 1, 1, [100, 100, 50, 40]),
    box(3, 1, 2, [300, 200, 120, 100]),
    box(4, 2, 2, [20, 30, 8, 12]),
]


@needs_pycocotools
def test_perfect_predictions_give_one_everywhere(tmp_path: Path) -> None:
    gt = ground_truth(MIXED, images=2, categories=(1, 2))
    dets = [detection(a["image_id"], a["category_id"], a["bbox"]) for a in MIXED]
    result = coco_map(gt, dets)
    assert set(result) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert result[key] == pytest.approx(1.0, abs=EXACT), key
    same_as_pycocotools(result, pycocotools_directly(gt, dets, tmp_path))


@needs_pycocotools
def test_area_range_without_ground_truth_is_nan_not_minus_one() -> None:
    gt = ground_truth([box(1, 1, 1, [0, 0, 10, 10])])  # one small box: no medium, no large
    result = coco_map(gt, [detection(1, 1, [0, 0, 10, 10])])
    for key in ("map", "map50", "map75", "map_small"):
        assert result[key] == pytest.approx(1.0, abs=EXACT)
    assert math.isnan(result["map_medium"]) and math.isnan(result["map_large"])


def shifted_iou(shift: Fraction) -> Fraction:
    # gt (0, 0, 10, 10), prediction moved right by `shift`: overlap (10 - s) * 10, union 200 - overlap.
    overlap = (10 - shift) * 10
    return overlap / (200 - overlap)


@needs_pycocotools
@pytest.mark.parametrize(
    ("shift", "hand_iou", "hand_map"),
    [
        (Fraction(5, 2), Fraction(3, 5), 0.3),  # IoU exactly 0.60: thresholds .50 .55 .60 count (IoU >= t)
        (Fraction(23, 10), Fraction(77, 123), 0.3),  # IoU 0.626: unambiguous, same three thresholds
        (Fraction(2), Fraction(2, 3), 0.4),  # IoU 0.667: .50 .55 .60 .65
    ],
)
def test_shifted_box_counts_the_thresholds_below_its_iou(tmp_path: Path, shift: Fraction, hand_iou: Fraction,
                                                        hand_map: float) -> None:
    assert shifted_iou(shift) == hand_iou
    counted = sum(1 for k in range(10) if Fraction(50 + 5 * k, 100) <= hand_iou)
    assert counted / 10 == hand_map
    gt = ground_truth([box(1, 1, 1, [0, 0, 10, 10])])
    dets = [detection(1, 1, [float(shift), 0.0, 10.0, 10.0])]
    result = coco_map(gt, dets)
    assert result["map50"] == pytest.approx(1.0, abs=EXACT)
    assert result["map75"] == 0.0
    assert result["map"] == pytest.approx(hand_map, abs=EXACT)
    assert result["map_small"] == pytest.approx(hand_map, abs=EXACT)
    same_as_pycocotools(result, pycocotools_directly(gt, dets, tmp_path))


@needs_pycocotools
def test_wrong_class_prediction_scores_zero(tmp_path: Path) -> None:
    gt = ground_truth([box(1, 1, 1, [0, 0, 10, 10])], categories=(1, 2))
    dets = [detection(1, 2, [0, 0, 10, 10])]
    result = coco_map(gt, dets)
    assert result["map"] == 0.0 and result["map50"] == 0.0 and result["map75"] == 0.0
    same_as_pycocotools(result, pycocotools_directly(gt, dets, tmp_path))


@needs_pycocotools
def test_crowd_ground_truth_is_neither_required_nor_a_false_positive(tmp_path: Path) -> None:
    gt = ground_truth([box(1, 1, 1, [0, 0, 10, 10]), box(2, 1, 1, [100, 100, 60, 60], iscrowd=1)])
    # Not finding the crowd region costs nothing (were it normal gt, recall would stop at 0.5).
    assert coco_map(gt, [detection(1, 1, [0, 0, 10, 10])])["map"] == pytest.approx(1.0, abs=EXACT)
    # A higher-scored detection on the crowd region is ignored (were it a false positive, AP@.5 would be 0.5).
    dets = [detection(1, 1, [0, 0, 10, 10], 0.5), detection(1, 1, [100, 100, 60, 60], 0.9)]
    result = coco_map(gt, dets)
    assert result["map50"] == pytest.approx(1.0, abs=EXACT)
    same_as_pycocotools(result, pycocotools_directly(gt, dets, tmp_path))
    # Control: the same two boxes with the crowd flag off really do change the numbers.
    plain = ground_truth([box(1, 1, 1, [0, 0, 10, 10]), box(2, 1, 1, [100, 100, 60, 60])])
    assert coco_map(plain, [detection(1, 1, [0, 0, 10, 10])])["map"] < 0.9


@needs_pycocotools
def test_no_detections_give_zeros_without_loadres() -> None:
    gt = ground_truth(MIXED, images=2, categories=(1, 2))
    result = coco_map(gt, [])
    assert result == {key: 0.0 for key in METRIC_KEYS}


@needs_pycocotools
def test_no_detections_keep_undefined_area_ranges_nan() -> None:
    result = coco_map(ground_truth([box(1, 1, 1, [0, 0, 10, 10])]), [])
    assert result["map"] == result["map50"] == result["map75"] == result["map_small"] == 0.0
    assert math.isnan(result["map_medium"]) and math.isnan(result["map_large"])


@needs_pycocotools
def test_missing_area_and_iscrowd_are_filled_on_a_copy() -> None:
    bare = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100]}]
    gt = ground_truth(bare)
    before = copy.deepcopy(gt)
    dets = [detection(1, 1, [0, 0, 10, 10]), detection(1, 1, [200, 200, 100, 100])]
    dets_before = copy.deepcopy(dets)
    result = coco_map(gt, dets)
    assert gt == before and dets == dets_before  # neither the caller's gt nor detections are modified
    assert result["map"] == pytest.approx(1.0, abs=EXACT)
    assert result["map_small"] == pytest.approx(1.0, abs=EXACT)  # area 100 = w*h -> small
    assert result["map_large"] == pytest.approx(1.0, abs=EXACT)  # area 10000 -> large
    assert math.isnan(result["map_medium"])


@needs_pycocotools
def test_pycocotools_prints_are_silenced(capsys: pytest.CaptureFixture[str]) -> None:
    coco_map(ground_truth([box(1, 1, 1, [0, 0, 10, 10])]), [detection(1, 1, [0, 0, 10, 10])])
    assert capsys.readouterr().out == ""


@needs_pycocotools
def test_detections_for_unknown_images_or_categories_are_rejected() -> None:
    gt = ground_truth([box(1, 1, 1, [0, 0, 10, 10])])
    with pytest.raises(ValueError, match=r"image ids \[9\]"):
        coco_map(gt, [detection(9, 1, [0, 0, 10, 10])])
    with pytest.raises(ValueError, match=r"category ids \[5\]"):
        coco_map(gt, [detection(1, 5, [0, 0, 10, 10])])


def test_to_coco_detections_maps_labels_to_non_contiguous_ids_and_boxes_to_xywh() -> None:
    outputs = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.5, 0.25, 3.0, 4.0]]),
            "labels": torch.tensor([3, 1], dtype=torch.int64),
            "scores": torch.tensor([0.9, 0.4]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)},
        {"boxes": [[5, 5, 6, 8]], "labels": [2], "scores": [0.75]},  # plain lists work too
    ]
    records = to_coco_detections([17, 18, 19], outputs, [3, 7, 42])
    assert records == [
        {"image_id": 17, "category_id": 42, "bbox": [1.0, 2.0, 10.0, 20.0], "score": pytest.approx(0.9)},
        {"image_id": 17, "category_id": 3, "bbox": [0.5, 0.25, 2.5, 3.75], "score": pytest.approx(0.4)},
        {"image_id": 19, "category_id": 7, "bbox": [5.0, 5.0, 1.0, 3.0], "score": 0.75},
    ]
    for record in records:
        assert type(record["image_id"]) is int and type(record["category_id"]) is int
        assert all(type(v) is float for v in record["bbox"]) and type(record["score"]) is float


@needs_pycocotools
def test_to_coco_detections_round_trip_through_coco_map() -> None:
    gt = ground_truth([box(1, 5, 7, [10, 20, 30, 40]), box(2, 6, 42, [0, 0, 100, 120])], categories=(3, 7, 42))
    gt["images"] = [{"id": 5, "width": 200, "height": 200}, {"id": 6, "width": 200, "height": 200}]
    outputs = [
        {"boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0]]), "labels": torch.tensor([2]), "scores": torch.tensor([0.8])},
        {"boxes": torch.tensor([[0.0, 0.0, 100.0, 120.0]]), "labels": torch.tensor([3]), "scores": torch.tensor([0.7])},
    ]
    result = coco_map(gt, to_coco_detections(torch.tensor([5, 6]), outputs, [3, 7, 42]))
    assert result["map"] == pytest.approx(1.0, abs=EXACT)


def test_to_coco_detections_rejects_background_or_out_of_range_labels() -> None:
    for label in (0, 4):
        output = {"boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "labels": torch.tensor([label]),
                  "scores": torch.tensor([1.0])}
        with pytest.raises(ValueError, match=r"outside 1\.\.3"):
            to_coco_detections([1], [output], [3, 7, 42])


def test_to_coco_detections_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 image ids for 1 outputs"):
        to_coco_detections([1, 2], [{"boxes": [], "labels": [], "scores": []}], [1])


def test_missing_pycocotools_raises_with_the_pip_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DetectionEvalUnavailable, match=r"pip install 'kdlab\[detection\]'") as info:
        coco_map(ground_truth([]), [])
    assert isinstance(info.value, ImportError)
    assert str(info.value) == "COCO mAP needs pycocotools: pip install 'kdlab[detection]'"
    # Converting outputs does not need pycocotools.
    assert to_coco_detections([1], [{"boxes": [], "labels": [], "scores": []}], [1]) == []
