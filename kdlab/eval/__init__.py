"""Model-agnostic evaluation: pure functions over tensors.

Nothing here depends on the trainer or the data layer, so any model's logits or embeddings
can be scored: top-k accuracy, weighted kNN, linear probes, representation similarity
(CKA, neighbourhood overlap, cosine alignment), 2-D embedding plots, retrieval, linear
transfer, the common corruptions (:mod:`kdlab.eval.corruptions`) and their mCE.
"""

from kdlab.eval.knn import knn_accuracy, knn_classify
from kdlab.eval.linear_probe import linear_probe
from kdlab.eval.manifold import (
    knn_overlap,
    linear_cka,
    manifold_report,
    mean_dimension_cosine,
    mean_sample_cosine,
)
from kdlab.eval.metrics import ClassificationMeter, topk_accuracy
from kdlab.eval.plots import plot_embedding_2d
from kdlab.eval.retrieval import retrieval_metrics
from kdlab.eval.transfer import l2_grid, linear_transfer, split_validation

__all__ = [
    "ClassificationMeter",
    "knn_accuracy",
    "knn_classify",
    "knn_overlap",
    "l2_grid",
    "linear_cka",
    "linear_probe",
    "linear_transfer",
    "manifold_report",
    "mean_dimension_cosine",
    "mean_sample_cosine",
    "plot_embedding_2d",
    "retrieval_metrics",
    "split_validation",
    "topk_accuracy",
]
