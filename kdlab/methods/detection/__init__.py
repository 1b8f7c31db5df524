"""Detection loss terms (``task: detection``) and the detection Distiller.

Importing the package registers ``det``, ``roi_ckd``, ``roi_kd``, ``roi_dkd``,
``fpn_fitnet`` and ``reviewkd``.
"""

from kdlab.methods.detection import det, fpn_fitnet, reviewkd, roi_logits  # noqa: F401 - registration
from kdlab.methods.detection.base import DetectionBuildContext, DetectionStep, DetectionTerm
from kdlab.methods.detection.distiller import DetectionDistiller

__all__ = ["DetectionBuildContext", "DetectionDistiller", "DetectionStep", "DetectionTerm"]
