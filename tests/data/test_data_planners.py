"""Batch planners and the per-rank column split."""

from __future__ import annotations

import pytest
import torch

from kdlab.data import DataError, KnnBatchPlanner, RandomBatchPlanner, rank_columns
from kdlab.data.planners import load_knn_neighbours


def test_random_plan_is_a_deterministic_permutation_per_epoch():
    planner = RandomBatchPlanner(103, 10, seed=4)
    plan = planner.plan(0)
    assert plan.shape == (10, 10) and plan.dtype == torch.long
    assert plan.flatten().unique().numel() == 100
    assert torch.equal(plan, RandomBatchPlanner(103, 10, seed=4).plan(0))
    assert not torch.equal(plan, planner.plan(1))
    assert not torch.equal(plan, RandomBatchPlanner(103, 10, seed=5).plan(0))


def test_random_plan_without_drop_last_pads_from_the_start():
    plan = RandomBatchPlanner(25, 10, seed=0, drop_last=False).plan(2)
    assert plan.shape == (3, 10)
    flat = plan.flatten()
    assert flat[:25].unique().numel() == 25
    assert torch.equal(flat[25:], flat[:5])


def _neighbour_table(n: int, k: int) -> torch.Tensor:
    # Neighbours of i: i+1, i+2, ... (mod n), nearest first, never i itself.
    return (torch.arange(n)[:, None] + torch.arange(1, k + 1)[None, :]) % n


def test_knn_plan_groups_anchor_then_pool_neighbours():
    n, k, anchors, per_anchor, pool = 50, 12, 4, 3, 6
    planner = KnnBatchPlanner(_neighbour_table(n, k), anchors, per_anchor, pool, seed=1)
    plan = planner.plan(0)
    assert plan.shape == (n // anchors, anchors * (1 + per_anchor))
    groups = plan.reshape(-1, 1 + per_anchor)
    anchor_ids = groups[:, 0]
    assert anchor_ids.unique().numel() == anchor_ids.numel()  # a permutation prefix
    offsets = (groups[:, 1:] - anchor_ids[:, None]) % n
    assert offsets.min() >= 1 and offsets.max() <= pool  # from the top `pool` only
    assert all(row.unique().numel() == per_anchor for row in offsets)  # without replacement
    assert torch.equal(plan, KnnBatchPlanner(_neighbour_table(n, k), anchors, per_anchor, pool, seed=1).plan(0))
    assert not torch.equal(plan, planner.plan(1))


def test_knn_plan_uses_the_whole_pool_over_time():
    planner = KnnBatchPlanner(_neighbour_table(40, 31), anchors=4, neighbours_per_anchor=2, pool=5, seed=0)
    offsets = torch.cat([((p.reshape(-1, 3)[:, 1:] - p.reshape(-1, 3)[:, :1]) % 40).flatten() for p in map(planner.plan, range(20))])
    assert sorted(offsets.unique().tolist()) == [1, 2, 3, 4, 5]


def test_knn_planner_rejects_bad_tables():
    with pytest.raises(DataError, match="cannot draw 8 neighbours"):
        KnnBatchPlanner(_neighbour_table(20, 5), anchors=2, neighbours_per_anchor=8, pool=31)
    with pytest.raises(DataError, match=r"\[0, 20\)"):
        KnnBatchPlanner(_neighbour_table(20, 5) + 20, anchors=2, neighbours_per_anchor=2)
    with pytest.raises(DataError, match=r"\(N, K\)"):
        KnnBatchPlanner(torch.arange(5), anchors=2)


def test_rank_columns_split_and_errors():
    assert rank_columns(8, 1, 2) == slice(4, 8)
    with pytest.raises(DataError, match=r"data.batch_size=10 .*world size 4"):
        rank_columns(10, 0, 4)
    with pytest.raises(DataError, match="multiple of the knn anchor group size 4"):
        rank_columns(8, 0, 4, group_size=4)


def test_knn_index_file_is_checked(tmp_path):
    path = tmp_path / "nn.pt"
    torch.save({"neighbours": _neighbour_table(10, 4), "distances": torch.zeros(10, 4)}, path)
    assert load_knn_neighbours(path, 10).shape == (10, 4)
    with pytest.raises(DataError, match="neighbours for 10 samples, but the training set has 12"):
        load_knn_neighbours(path, 12)
    torch.save({"other": 1}, path)
    with pytest.raises(DataError, match="'neighbours'"):
        load_knn_neighbours(path, 10)
    with pytest.raises(DataError, match="does not exist"):
        load_knn_neighbours(tmp_path / "missing.pt", 10)
