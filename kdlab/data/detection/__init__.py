"""Detection data: COCO and Pascal VOC readers, seeded detection batches, and ``make-detection``."""

from kdlab.data.detection.build import DetectionDataBundle, build_detection_data
from kdlab.data.detection.make import MakeDetectionOptions, make_detection_dataset
from kdlab.data.detection.streams import DetectionEvalStream, DetectionTrainStream

__all__ = [
    "DetectionDataBundle", "DetectionEvalStream", "DetectionTrainStream", "MakeDetectionOptions",
    "build_detection_data", "make_detection_dataset",
]
