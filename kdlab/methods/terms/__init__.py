"""Built-in loss terms; importing this package registers them.

One file per method: ``ce`` (labels); the logit terms ``kd``, ``dkd``, ``ckd``,
``dist``, ``nkd``, ``mlkd`` (with ``ce_strong``: MLKD's two views), ``deit`` (a
distilled DeiT's distillation token); the feature terms ``fitnet``, ``at``, ``sp``,
``rkd``, ``pkt``, ``crd``, ``vid``, ``cc``, ``nst``, and ``reviewkd`` and ``ofd``
(multi-stage feature terms with their own fusion / connectors), ``ofa`` (stages
projected into the logit space: heterogeneous pairs).
Shared helpers: :mod:`._features` (which feature a term reads),
:mod:`._adapters` (regressors), :mod:`._params` (parameter checks).
"""

from kdlab.methods.terms import (
    at,
    cc,
    ce,
    ckd,
    crd,
    deit,
    dist,
    dkd,
    fitnet,
    kd,
    mlkd,
    nkd,
    nst,
    ofa,
    ofd,
    pkt,
    reviewkd,
    rkd,
    sp,
    vid,
)

#: the modules whose import registers the built-in terms (named here so that linters see them used)
TERM_MODULES = (
    at, cc, ce, ckd, crd, deit, dist, dkd, fitnet, kd, mlkd, nkd, nst, ofa, ofd, pkt, reviewkd, rkd, sp, vid,
)
