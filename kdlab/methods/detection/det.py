"""``det``: the detector's own training losses."""

from __future__ import annotations

import torch

from kdlab.methods.base import register_term
from kdlab.methods.detection.base import DetectionBuildContext, DetectionStep, DetectionTerm


@register_term
class DetectorLossTerm(DetectionTerm):
    """``det``: Faster R-CNN's four losses, summed; each logged as a sub-term.

    ``rpn_objectness`` (binary cross-entropy of the sampled anchors), ``rpn_box``
    (smooth-L1 of the positive anchors' box deltas), ``roi_cls`` (cross-entropy of
    the sampled RoIs over K + 1 classes) and ``roi_box`` (smooth-L1 of the positive
    RoIs' class-specific deltas), as torchvision computes them. Alone it is
    supervised detector training, the baseline every detection method is compared with.
    """

    name = "det"
    paper = "Ren et al., Faster R-CNN, NeurIPS 2015 (torchvision's implementation)"
    needs_teacher = False
    needs_labels = True
    uses = frozenset({"losses"})

    def __init__(self, ctx: DetectionBuildContext) -> None:
        super().__init__(ctx)

    def forward(self, step: DetectionStep) -> dict[str, torch.Tensor]:
        parts = dict(step.losses)
        total = torch.stack([v.float() for v in parts.values()]).sum()
        return {"loss": total, **parts}
