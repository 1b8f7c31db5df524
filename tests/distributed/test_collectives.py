"""Distributed helpers: identities in one process, exact collectives across 2 gloo processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _helpers import TINY, explain, torchrun

from kdlab.config import load_config
from kdlab.data import DataError, build_data, rank_columns
from kdlab.engine import distributed


def test_single_process_helpers_are_identities():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    assert distributed.all_gather_rows(x) is x
    assert distributed.all_reduce_sum(x) is x
    assert distributed.max_over_ranks([2, 0]) == [2, 0]
    assert distributed.all_gather_objects("a") == ["a"]
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1 and distributed.is_main_process()
    distributed.set_gather_enabled(True)
    try:
        assert not distributed.gather_enabled()  # only meaningful across ranks
    finally:
        distributed.set_gather_enabled(False)
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap_ddp(module, torch.device("cpu")) is module
    assert distributed.unwrap(module) is module


def test_launch_context_reads_the_launcher_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = distributed.launch_context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (1, 4, 1, True, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        distributed.launch_context()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x'"):
        distributed.launch_context()


def test_missing_rendezvous_address_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR is not set: launch with torchrun"):
        distributed.setup("cpu")


def test_cross_rank_batchnorm_is_plain_batchnorm_in_one_process():
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    converted = distributed.convert_sync_batchnorm(
        torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)), torch.device("cpu")
    )
    converted.load_state_dict(reference.state_dict())
    assert isinstance(converted[1], distributed.CrossRankBatchNorm)
    assert converted.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(4, 3, 6, 6)
    assert torch.equal(converted(x), reference(x))
    assert torch.equal(converted[1].running_var, reference[1].running_var)


def test_global_batch_that_does_not_split_names_the_key_and_the_world_size():
    with pytest.raises(DataError, match=r"data\.batch_size=15 .*world size 2"):
        rank_columns(15, 0, 2)


def test_eval_shards_cover_every_sample_exactly_once():
    cfg = load_config(None, [*TINY, "data.synthetic_test=31", "data.eval_batch_size=4", "data.batch_size=12"])
    for world in (2, 3):
        seen = []
        for rank in range(world):
            bundle = build_data(cfg.data, seed=0, rank=rank, world_size=world)
            for stream, size in ((bundle.eval, 31), (bundle.train_eval, 64)):
                indices = torch.cat([batch["index"] for batch in stream]).tolist()
                assert len(indices) == stream.num_samples
                if size == 31:
                    seen.extend(indices)
        assert sorted(seen) == list(range(31)), world


def test_collectives_across_two_processes(tmp_path: Path):
    worker = Path(__file__).with_name("_collectives_worker.py")
    proc = torchrun([str(worker)], cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.count("collectives ok") == 2, explain(proc)
