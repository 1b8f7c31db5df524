"""Pure distillation losses: tensors in, scalar (or dict of scalars) out.

Each method file holds a function with the paper's formula and a thin
``nn.Module`` that stores the hyper-parameters. Nothing here imports the rest of
kdlab; extra trainable parts (regressors, projections, memory banks, queues)
belong to the methods, which pass their outputs in. Half/bfloat16 inputs are
computed in float32. Teacher tensors are used as given: detach them when the
teacher should receive no gradient (CRD's teacher projection does need it).
"""

from kdlab.losses.ab import ABLoss, ab_loss
from kdlab.losses.at import ATLoss, at_loss, attention_map
from kdlab.losses.cc import CCLoss, cc_loss
from kdlab.losses.ckd import CKDLoss, CKDNegatives, ckd_loss
from kdlab.losses.coss import CoSSLoss, coss_loss
from kdlab.losses.crd import CRDLoss, crd_loss, crd_normalizers, crd_update_memory
from kdlab.losses.deit import DeiTLoss, deit_distillation_loss, deit_loss, deit_loss_parts
from kdlab.losses.dist import DISTLoss, dist_loss
from kdlab.losses.dkd import DKDLoss, dkd_loss
from kdlab.losses.embedding import CosineEmbeddingLoss, MSEEmbeddingLoss, cosine_embedding_loss, mse_embedding_loss
from kdlab.losses.fitnet import FitNetLoss, fitnet_loss
from kdlab.losses.fsp import FSPLoss, fsp_loss, fsp_matrix
from kdlab.losses.ft import FTLoss, ft_loss
from kdlab.losses.kd import KDLoss, kd_loss
from kdlab.losses.logit_standardization import LogitStandardization, logit_standardize
from kdlab.losses.mlkd import MLKDLoss, mlkd_loss, mlkd_loss_parts, mlkd_masks
from kdlab.losses.nkd import NKDLoss, nkd_loss
from kdlab.losses.nst import NSTLoss, nst_loss
from kdlab.losses.ofa import OFALoss, ofa_loss
from kdlab.losses.ofd import OFDLoss, ofd_loss, ofd_margin
from kdlab.losses.pkt import PKTLoss, pkt_conditional_probabilities, pkt_loss
from kdlab.losses.reviewkd import HCLLoss, hcl_loss
from kdlab.losses.rkd import RKDLoss, normalized_distances, rkd_loss, triplet_angles
from kdlab.losses.seed import SEEDLoss, seed_loss, seed_update_queue
from kdlab.losses.sp import SPLoss, batch_similarity, sp_loss
from kdlab.losses.sskd import (
    SSKDLoss,
    select_confident_rows,
    sskd_loss,
    sskd_similarity,
    sskd_ss_accuracy,
    sskd_ss_ce_loss,
)
from kdlab.losses.vid import VIDLoss, vid_log_scale_init, vid_loss, vid_variance

__all__ = [
    "ABLoss",
    "ATLoss",
    "CCLoss",
    "CKDLoss",
    "CKDNegatives",
    "CRDLoss",
    "CoSSLoss",
    "CosineEmbeddingLoss",
    "DISTLoss",
    "DKDLoss",
    "DeiTLoss",
    "FSPLoss",
    "FTLoss",
    "FitNetLoss",
    "HCLLoss",
    "KDLoss",
    "LogitStandardization",
    "MLKDLoss",
    "MSEEmbeddingLoss",
    "NKDLoss",
    "NSTLoss",
    "OFALoss",
    "OFDLoss",
    "PKTLoss",
    "RKDLoss",
    "SEEDLoss",
    "SPLoss",
    "SSKDLoss",
    "VIDLoss",
    "ab_loss",
    "at_loss",
    "attention_map",
    "batch_similarity",
    "cc_loss",
    "ckd_loss",
    "cosine_embedding_loss",
    "coss_loss",
    "crd_loss",
    "crd_normalizers",
    "crd_update_memory",
    "deit_distillation_loss",
    "deit_loss",
    "deit_loss_parts",
    "dist_loss",
    "dkd_loss",
    "fitnet_loss",
    "fsp_loss",
    "fsp_matrix",
    "ft_loss",
    "hcl_loss",
    "kd_loss",
    "logit_standardize",
    "mlkd_loss",
    "mlkd_loss_parts",
    "mlkd_masks",
    "mse_embedding_loss",
    "nkd_loss",
    "normalized_distances",
    "nst_loss",
    "ofa_loss",
    "ofd_loss",
    "ofd_margin",
    "pkt_conditional_probabilities",
    "pkt_loss",
    "rkd_loss",
    "seed_loss",
    "seed_update_queue",
    "select_confident_rows",
    "sp_loss",
    "sskd_loss",
    "sskd_similarity",
    "sskd_ss_accuracy",
    "sskd_ss_ce_loss",
    "triplet_angles",
    "vid_log_scale_init",
    "vid_loss",
    "vid_variance",
]
