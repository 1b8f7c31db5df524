"""channels_last, bf16 autocast and torch.compile give the losses of the plain fp32 NCHW path (CPU)."""

from __future__ import annotations

import os
from contextlib import nullcontext

import pytest
import torch

from kdlab.engine.trainer import Trainer
from perf_helpers import cache_path, config


def first_step_losses(tiny, *extra: str) -> dict[str, float]:
    """Loss terms of the first training batch, same seed (same initial weights, same batch)."""
    trainer = Trainer(config(tiny, f"trainer.out_dir={tiny['root'] / 'unused'}", *extra))
    batch = next(iter(trainer.data.train.epoch(0)))
    with trainer.autocast if trainer.autocast is not None else nullcontext():
        out = trainer.method(batch, epoch=0, progress=0.0)
    assert out.loss.dtype == torch.float32  # losses are summed in fp32 whatever the compute precision
    return {"loss": float(out.loss.detach()), **{k: float(v.detach()) for k, v in out.terms.items()}}


def assert_close(a: dict[str, float], b: dict[str, float], rtol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) <= rtol * max(1.0, abs(a[key])), (key, a[key], b[key])


def test_channels_last_gives_the_plain_losses(tiny):
    assert_close(first_step_losses(tiny), first_step_losses(tiny, "trainer.channels_last=true"), rtol=1e-4)


def test_bf16_autocast_on_cpu_gives_the_plain_losses_within_bf16_rounding(tiny):
    assert_close(first_step_losses(tiny), first_step_losses(tiny, "trainer.precision=bf16"), rtol=5e-2)


def test_a_cache_built_nchw_serves_a_channels_last_run(tiny):
    plain = first_step_losses(tiny)
    cached = first_step_losses(tiny, "trainer.channels_last=true", f"distill.teacher_cache={cache_path(tiny)}")
    assert_close(plain, cached, rtol=2e-3)


@pytest.mark.skipif(
    os.environ.get("KDLAB_TEST_COMPILE") != "1",
    reason="torch.compile takes minutes on 2 shared CPU cores; set KDLAB_TEST_COMPILE=1 to run it",
)
def test_compiled_student_gives_the_plain_losses(tiny):
    assert_close(first_step_losses(tiny), first_step_losses(tiny, "trainer.compile=true"), rtol=1e-4)
