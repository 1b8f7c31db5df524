"""Run by torchrun from test_ddp_training.py: ce + a CKD probe term, gather off then on, in one job.

argv: OUT_ROOT TEACHER_RUN RESULT_JSON. Rank 0 writes the per-step probe losses of both runs.
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


def main() -> None:
    out_root, teacher, result_path = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    losses: dict[str, list[float]] = {}
    for gather in (False, True):
        _probe_terms.RECORDED.clear()
        cfg = load_config(
            None,
            [
                *TINY,
                "trainer.epochs=1",
                "trainer.sync_batchnorm=true",
                f"teacher.checkpoint={teacher}",
                "distill.terms=[{name: ce, weight: 1.0}, {name: ckd_gather_probe, weight: 1.0}]",
                f"distill.gather={str(gather).lower()}",
                f"trainer.out_dir={out_root / f'gather_{gather}'}",
            ],
        )
        result = Trainer(cfg).fit()
        assert result.completed
        losses[str(gather).lower()] = list(_probe_terms.RECORDED)
    every_rank = distributed.all_gather_objects(losses)
    if distributed.is_main_process():
        result_path.write_text(json.dumps({"ranks": every_rank}))
    distributed.shutdown()


if __name__ == "__main__":
    main()
