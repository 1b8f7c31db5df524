"""A 2-process gloo detection run trains like one process with the whole batch (float tolerance).

What makes the two equal: SyncBatchNorm (trainer.sync_batchnorm=true), anchors and RoIs sampled
per image from (seed, epoch, image index) (not from each process's RNG stream), as many sampled
anchors and RoIs in every image (so each rank's mean loss averages to the global mean), and
`distill.gather: true` for roi_ckd, whose negatives are then every RoI of the global batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from _helpers import explain, torchrun

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detection"))
from det_runs import last_weights, make_canvases, tiny, train, with_teacher  # noqa: E402

TOLERANCE = 2e-5


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    data = make_canvases(tmp_path / "data")
    teacher = tmp_path / "teacher"
    assert train(data, teacher, "trainer.epochs=1", "model.name=det:fasterrcnn_resnet20_fpn").completed
    common = [*with_teacher(teacher), "trainer.epochs=1", "trainer.sync_batchnorm=true", "distill.gather=true"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = tmp_path / "single"
        assert train(data, single, *common).completed
    finally:
        torch.set_num_threads(threads)
    (tmp_path / "empty.yaml").write_text("{}\n")
    ddp = tmp_path / "ddp"
    proc = torchrun(["-m", "kdlab", "train", str(tmp_path / "empty.yaml"), *tiny(data), *common,
                     f"trainer.out_dir={ddp}"], cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    a, b = last_weights(single), last_weights(ddp)
    assert a.keys() == b.keys()
    difference = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    print(f"detection DDP 2x2 vs 1x4 (det + roi_ckd gathered + fpn_fitnet, SyncBN): max |weight difference| = "
          f"{difference:.3g}")
    assert difference < TOLERANCE
