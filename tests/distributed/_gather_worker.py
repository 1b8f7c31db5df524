"""Run by torchrun from test_ddp_training.py: several short runs in one job (one process group).

argv: OUT_ROOT TEACHER_RUN RESULT_JSON. Rank 0 writes every rank's per-step probe losses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _probe_terms
from _helpers import TINY

from kdlab.config import load_config
from kdlab.engine import distributed
from kdlab.engine.trainer import Trainer


COMMON = [*TINY, "trainer.epochs=1", "trainer.sync_batchnorm=true"]
CKD_TERMS = "distill.terms=[{name: ce, weight: 1.0}, {name: ckd_gather_probe, weight: 1.0}]"


def runs(teacher: str) -> dict[str, list[str]]:
    """Run name -> overrides: CKD with local and with gathered negatives, label-free CoSS gathered."""
    return {
        "ckd_false": [f"teacher.checkpoint={teacher}", CKD_TERMS, "distill.gather=false"],
        "ckd_true": [f"teacher.checkpoint={teacher}", CKD_TERMS, "distill.gather=true"],
        # label-free: the student's classifier gets no gradient, evaluation is kNN on gathered embeddings
        "coss_true": [f"teacher.checkpoint={teacher}", "distill.terms=[{name: coss}]", "distill.labels=false",
                      "distill.gather=true"],
    }


def main() -> None:
    out_root, teacher, result_path = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    losses: dict[str, list[float]] = {}
    for name, overrides in runs(teacher).items():
        _probe_terms.RECORDED.clear()
        cfg = load_config(None, [*COMMON, *overrides, f"trainer.out_dir={out_root / name}"])
        result = Trainer(cfg).fit()
        assert result.completed
        losses[name] = list(_probe_terms.RECORDED)
    every_rank = distributed.all_gather_objects(losses)
    if distributed.is_main_process():
        result_path.write_text(json.dumps({"ranks": every_rank}))
    distributed.shutdown()


if __name__ == "__main__":
    main()
