"""Training and eval streams: indices, exact resume, DDP slicing, worker independence, eval shards."""

from __future__ import annotations

import pytest
import torch

from kdlab.data import DataError, build_data

PIPELINES = ["fast", "standard"]


def _cfg(make_cfg, pipeline, **overrides):
    base = dict(name="synthetic", synthetic_train=48, synthetic_test=10, synthetic_size=8, batch_size=8,
                crop_padding=2, pipeline=pipeline)
    base.update(overrides)
    return make_cfg(**base)


def _same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x["image"], y["image"]) and torch.equal(x["index"], y["index"]) and torch.equal(x["target"], y["target"])
        for x, y in zip(a, b)
    )


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_batches_carry_index_and_matching_target(make_cfg, pipeline):
    bundle = build_data(_cfg(make_cfg, pipeline), seed=0)
    labels = torch.cat([b["target"] for b in bundle.train_eval])
    batches = list(bundle.train.epoch(0))
    assert len(batches) == bundle.train.steps_per_epoch == 48 // 8
    for batch in batches:
        assert batch["index"].dtype == torch.long and batch["target"].dtype == torch.long
        assert torch.equal(batch["target"], labels[batch["index"]])
    seen = torch.cat([b["index"] for b in batches])
    assert seen.unique().numel() == 48


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_resume_mid_epoch_is_bitwise_exact(make_cfg, pipeline):
    bundle = build_data(_cfg(make_cfg, pipeline), seed=11)
    full = list(bundle.train.epoch(3))
    resumed = list(build_data(_cfg(make_cfg, pipeline), seed=11).train.epoch(3, start_step=4))
    assert _same_batches(full[4:], resumed)
    assert list(bundle.train.epoch(3, start_step=99)) == []


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_epochs_and_seeds_differ(make_cfg, pipeline):
    bundle = build_data(_cfg(make_cfg, pipeline), seed=0)
    other_seed = build_data(_cfg(make_cfg, pipeline), seed=1)
    first = next(bundle.train.epoch(0))
    assert not torch.equal(first["index"], next(bundle.train.epoch(1))["index"])
    assert not torch.equal(first["index"], next(other_seed.train.epoch(0))["index"])


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("views", ["single", "rotate4"])
def test_two_ranks_of_b_equal_one_process_of_2b(make_cfg, pipeline, views):
    cfg = _cfg(make_cfg, pipeline, views=views)
    single = list(build_data(cfg, seed=2).train.epoch(1))
    ranks = [list(build_data(cfg, seed=2, rank=r, world_size=2).train.epoch(1)) for r in range(2)]
    assert all(len(r) == len(single) for r in ranks)
    for step, batch in enumerate(single):
        parts = [ranks[0][step], ranks[1][step]]
        assert parts[0]["image"].shape[0] == 4
        for key in ("image", "index", "target"):
            assert torch.equal(torch.cat([p[key] for p in parts]), batch[key])


def test_batch_size_must_divide_by_world_size(make_cfg):
    with pytest.raises(DataError, match=r"data.batch_size=8 .*world size 3"):
        build_data(_cfg(make_cfg, "fast"), seed=0, rank=0, world_size=3)


def test_batch_larger_than_dataset_is_an_error(make_cfg):
    with pytest.raises(DataError, match="data.batch_size=64 exceeds the 48"):
        build_data(_cfg(make_cfg, "fast", batch_size=64), seed=0)


def test_standard_path_is_independent_of_worker_count(make_cfg):
    no_workers = list(build_data(_cfg(make_cfg, "standard", num_workers=0), seed=4).train.epoch(0, start_step=3))
    two_workers = list(build_data(_cfg(make_cfg, "standard", num_workers=2), seed=4).train.epoch(0, start_step=3))
    assert _same_batches(no_workers, two_workers)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_streams_leave_the_global_rng_alone(make_cfg, pipeline):
    bundle = build_data(_cfg(make_cfg, pipeline), seed=0)
    state = torch.get_rng_state()
    list(bundle.train.epoch(0))
    list(bundle.eval)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_eval_shards_cover_each_sample_once(make_cfg, pipeline):
    cfg = _cfg(make_cfg, pipeline, eval_batch_size=3, batch_size=6)
    whole = build_data(cfg, seed=0)
    whole_batches = list(whole.eval)
    indices = torch.cat([b["index"] for b in whole_batches])
    assert indices.tolist() == list(range(10)) and whole.eval.num_samples == 10
    assert _same_batches(whole_batches, list(whole.eval))  # deterministic, re-iterable
    shards = [build_data(cfg, seed=0, rank=r, world_size=3) for r in range(3)]
    assert [s.eval.num_samples for s in shards] == [4, 3, 3]
    sharded = torch.cat([b["index"] for s in shards for b in s.eval])
    assert sorted(sharded.tolist()) == list(range(10))
    sharded_train = torch.cat([b["index"] for s in shards for b in s.train_eval])
    assert sorted(sharded_train.tolist()) == list(range(48))


def test_fast_and_standard_eval_images_agree(make_cfg):
    fast = torch.cat([b["image"] for b in build_data(_cfg(make_cfg, "fast"), seed=0).eval])
    standard = torch.cat([b["image"] for b in build_data(_cfg(make_cfg, "standard"), seed=0).eval])
    assert torch.allclose(fast, standard, atol=1e-5)


def test_knn_sampler_builds_anchor_groups(make_cfg, tmp_path):
    n = 48
    neighbours = (torch.arange(n)[:, None] + torch.arange(1, 9)[None, :]) % n
    path = tmp_path / "nn.pt"
    torch.save({"neighbours": neighbours, "k": 8}, path)
    cfg = _cfg(make_cfg, "fast", sampler="knn", knn_index=str(path), knn_anchors=2, knn_neighbours=3, knn_pool=5)
    bundle = build_data(cfg, seed=0)
    assert bundle.train.steps_per_epoch == n // 2
    batch = next(bundle.train.epoch(0))
    groups = batch["index"].reshape(2, 4)
    offsets = (groups[:, 1:] - groups[:, :1]) % n
    assert offsets.min() >= 1 and offsets.max() <= 5
    halves = [next(build_data(cfg, seed=0, rank=r, world_size=2).train.epoch(0))["index"] for r in range(2)]
    assert torch.equal(torch.cat(halves), batch["index"])
    with pytest.raises(DataError, match=r"data.batch_size=8 must equal data.knn_anchors \(2\) x \(1 \+ data.knn_neighbours \(4\)\) = 10"):
        build_data(_cfg(make_cfg, "fast", sampler="knn", knn_index=str(path), knn_anchors=2, knn_neighbours=4), seed=0)
    with pytest.raises(DataError, match="knn anchor group size 4"):
        build_data(cfg, seed=0, rank=0, world_size=4)
