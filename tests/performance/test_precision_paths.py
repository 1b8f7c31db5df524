"""channels_last, bf16 autocast, BatchNorm folding and torch.compile give the losses of the plain path (CPU).

The plain path: fp32, NCHW, the teacher run as loaded (no folding, no compile).
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import pytest
import torch

from kdlab.engine.trainer import Trainer
from perf_helpers import cache_path, config


PLAIN = ("trainer.channels_last=false", "teacher.fold_batchnorm=false")


def first_step_losses(tiny, *extra: str) -> dict[str, float]:
    """Loss terms of the first training batch, same seed (same initial weights, same batch)."""
    trainer = Trainer(config(tiny, f"trainer.out_dir={tiny['root'] / 'unused'}", *PLAIN, *extra))
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


def test_folded_teacher_gives_the_plain_losses(tiny):
    assert_close(first_step_losses(tiny), first_step_losses(tiny, "teacher.fold_batchnorm=true"), rtol=1e-4)


def test_default_fast_path_gives_the_plain_losses(tiny):
    """channels_last and the folded teacher together: the defaults."""
    fast = first_step_losses(tiny, "trainer.channels_last=null", "teacher.fold_batchnorm=true")
    assert_close(first_step_losses(tiny), fast, rtol=1e-4)


def test_compiled_teacher_gives_the_plain_losses(tiny):
    """Only the teacher's forward is compiled: seconds, unlike the student's forward and backward."""
    assert_close(first_step_losses(tiny), first_step_losses(tiny, "teacher.compile=true"), rtol=1e-4)


def test_bf16_autocast_on_cpu_gives_the_plain_losses_within_bf16_rounding(tiny):
    assert_close(first_step_losses(tiny), first_step_losses(tiny, "trainer.precision=bf16"), rtol=5e-2)


def test_bf16_teacher_with_an_fp32_student_gives_the_plain_losses_within_bf16_rounding(tiny):
    """teacher.precision=bf16: only the teacher's forward runs in bf16; the student and losses stay fp32."""
    mixed = first_step_losses(tiny, "teacher.precision=bf16")
    assert_close(first_step_losses(tiny), mixed, rtol=5e-2)
    assert first_step_losses(tiny, "teacher.precision=bf16") == mixed  # deterministic, like the fp32 path


def test_a_cache_records_and_checks_the_teacher_precision(tiny):
    from kdlab.cache.errors import TeacherCacheMismatchError

    path = cache_path(tiny, "bf16_cache")
    first_step_losses(tiny, "teacher.precision=bf16", f"distill.teacher_cache={path}")
    with pytest.raises(TeacherCacheMismatchError, match="teacher.precision: cache has 'bf16', this run has 'fp32'"):
        first_step_losses(tiny, f"distill.teacher_cache={path}")


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
