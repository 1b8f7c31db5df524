"""What a detection split is once its annotation files are read: images, boxes, labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageRecord:
    """One image of a split: where its pixels are and its objects in contiguous labels.

    ``boxes`` (N, 4) float32 xyxy pixels; ``labels`` (N,) int64 in 1..K; ``crowd`` (N,) bool:
    crowd (COCO ``iscrowd``) or difficult (VOC) objects, kept for evaluation, never trained on.
    """

    image_id: int
    file: str  # member name inside the image container
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    areas: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))


@dataclass
class DetectionSplit:
    """A split's images (in file order) and the class list they are labelled with."""

    name: str
    records: list[ImageRecord]
    classes: list[str]  # label l in 1..K is classes[l - 1]
    category_ids: list[int]  # label l is category category_ids[l - 1] of the annotation file
    source: str  # the annotation file (for messages and the fingerprint)
    dropped_boxes: int = 0  # zero-area boxes dropped while reading
    content_digest: str = ""  # hash of every annotation byte read (the fingerprint: an edited box is a new dataset)

    def ground_truth(self) -> dict:
        """The split as a COCO-format dict (category ids of the file; crowd objects flagged)."""
        images, annotations = [], []
        for record in self.records:
            images.append({"id": record.image_id, "width": record.width, "height": record.height,
                           "file_name": record.file})
            for box, label, crowd, area in zip(record.boxes, record.labels, record.crowd, record.areas):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": record.image_id,
                    "category_id": self.category_ids[int(label) - 1], "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(area), "iscrowd": int(bool(crowd)),
                })
        categories = [{"id": cid, "name": name} for cid, name in zip(self.category_ids, self.classes)]
        return {"images": images, "annotations": annotations, "categories": categories}
