"""Label-free (unsupervised) distillation: CoSS and the embedding baselines.

Importing this package registers the loss terms ``coss``, ``seed``,
``cosine``, ``mse_embed`` and ``ckd_embed``. Each compares the student's
embedding, projected to the teacher's width by a term-owned head when the
widths differ, with the teacher's embedding, and never reads labels.
"""

from kdlab.methods.unsupervised import ckd_embed, coss, regression, seed  # noqa: F401  (register terms)
from kdlab.methods.unsupervised.ckd_embed import CKDEmbeddingTerm
from kdlab.methods.unsupervised.coss import CoSSTerm
from kdlab.methods.unsupervised.head import EmbeddingTerm, projection_head
from kdlab.methods.unsupervised.moco import convert_moco_checkpoint
from kdlab.methods.unsupervised.regression import CosineEmbeddingTerm, MSEEmbeddingTerm
from kdlab.methods.unsupervised.seed import SEEDTerm

__all__ = [
    "CKDEmbeddingTerm",
    "CoSSTerm",
    "CosineEmbeddingTerm",
    "EmbeddingTerm",
    "MSEEmbeddingTerm",
    "SEEDTerm",
    "convert_moco_checkpoint",
    "projection_head",
]
