"""Built-in loss terms; importing this package registers them.

One file per method: ``ce`` (labels), the logit terms ``kd``, ``dkd``, ``ckd``,
and the feature terms ``fitnet``, ``at``, ``sp``, ``rkd``, ``pkt``, ``crd``.
Shared helpers: :mod:`._features` (which feature a term reads),
:mod:`._adapters` (regressors), :mod:`._params` (parameter checks).
"""

from kdlab.methods.terms import at, ce, ckd, crd, dkd, fitnet, kd, pkt, rkd, sp  # noqa: F401
