"""SSKD (Xu et al., "Knowledge Distillation Meets Self-Supervision", ECCV 2020).

Importing this package registers its loss terms: ``sskd`` (the student's
objective) and ``sskd_head`` (phase 1: the frozen teacher's self-supervision
head, trained automatically before the first SSKD run with that teacher).
"""

from kdlab.methods.sskd import head_term, term  # noqa: F401  (registers the terms)
from kdlab.methods.sskd.head import FrozenProjectionHead, ProjectionHead, ss_top1
from kdlab.methods.sskd.head_term import SSKDHeadTerm
from kdlab.methods.sskd.phase1 import HeadSettings, head_prerequisite, head_run_config, head_run_dir, load_head_state
from kdlab.methods.sskd.term import SSKDTerm
from kdlab.methods.sskd.views import rotate4_views, split_views

__all__ = [
    "FrozenProjectionHead",
    "HeadSettings",
    "ProjectionHead",
    "SSKDHeadTerm",
    "SSKDTerm",
    "head_prerequisite",
    "head_run_config",
    "head_run_dir",
    "load_head_state",
    "rotate4_views",
    "split_views",
    "ss_top1",
]
