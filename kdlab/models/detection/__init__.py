"""Object detection: torchvision Faster R-CNN over kdlab zoo or torchvision backbones (``det:`` names).

``create_model("det:fasterrcnn_<backbone>_fpn", num_classes=K, ...)`` (see
:func:`create_detector` for the options) returns a stock torchvision
``FasterRCNN``; the helpers here let a trainer recognise detectors and check
that a teacher and a student transform their inputs alike.
"""

from kdlab.models.detection.build import create_detector
from kdlab.models.detection.introspect import is_detector, transform_signature
from kdlab.models.detection.names import DET_PREFIX, list_detector_names, parse_detector_name
from kdlab.models.detection.options import ACCEPTED as DETECTOR_OPTIONS

__all__ = [
    "DETECTOR_OPTIONS",
    "DET_PREFIX",
    "create_detector",
    "is_detector",
    "list_detector_names",
    "parse_detector_name",
    "transform_signature",
]
