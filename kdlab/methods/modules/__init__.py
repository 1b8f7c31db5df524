"""Trainable building blocks that distillation methods own (fusion, projections).

Unlike :mod:`kdlab.losses` these hold parameters, which the method registers
with the optimiser alongside the student's.
"""

from kdlab.methods.modules.review import AttentionFusion, ReviewFusion

__all__ = ["AttentionFusion", "ReviewFusion"]
