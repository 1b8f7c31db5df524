"""Run by torchrun (2 gloo processes) from test_collectives.py; exits non-zero on any mismatch."""

from __future__ import annotations

import torch
from torch import nn

from kdlab.engine import distributed
from kdlab.engine.evaluate import classify


def check_gather_with_grad(rank: int, world: int) -> None:
    rows = 3
    x = (torch.arange(rows * 2, dtype=torch.float64).view(rows, 2) + 10 * rank).requires_grad_(True)
    gathered = distributed.gather_with_grad(x)
    expected = torch.cat([torch.arange(rows * 2, dtype=torch.float64).view(rows, 2) + 10 * r for r in range(world)])
    assert torch.equal(gathered.detach(), expected), gathered
    # a rank-dependent loss over the gathered batch: every rank's loss reaches every rank's rows
    coefficients = [torch.randn(world * rows, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(r)) for r in range(world)]
    (gathered * coefficients[rank]).sum().backward()
    want = sum(coefficients)[rank * rows : (rank + 1) * rows]
    assert torch.allclose(x.grad, want), (x.grad, want)
    labels = distributed.gather_with_grad(torch.full((2,), rank, dtype=torch.long))
    assert labels.tolist() == [r for r in range(world) for _ in range(2)], labels


def check_all_gather_rows(rank: int, world: int) -> None:
    local = torch.full((rank + 1, 2), float(rank))
    rows = distributed.all_gather_rows(local)
    assert rows.shape == (sum(r + 1 for r in range(world)), 2), rows.shape
    assert rows[:, 0].tolist() == [float(r) for r in range(world) for _ in range(r + 1)]


def check_sharded_classify(rank: int, world: int) -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(11, 3, generator=generator)
    targets = torch.randint(0, 4, (11,), generator=generator)
    model = nn.Linear(3, 4)
    with torch.no_grad():
        model.weight.copy_(torch.randn(4, 3, generator=generator))
        model.bias.zero_()

    def batches(indices: torch.Tensor):
        for chunk in indices.split(4):
            yield {"image": images[chunk], "target": targets[chunk]}

    whole = classify(model, batches(torch.arange(11)))
    shard = torch.arange(rank, 11, world)  # kdlab.data's eval shard: every sample once over the ranks
    reduced = classify(model, batches(shard), reduce_across_ranks=True)
    assert whole["top1"] == reduced["top1"] and whole["top5"] == reduced["top5"], (whole, reduced)
    assert abs(whole["loss"] - reduced["loss"]) < 1e-12, (whole, reduced)


def check_cross_rank_batchnorm(rank: int, world: int) -> None:
    generator = torch.Generator().manual_seed(1)
    full = torch.randn(4 * world, 3, 5, 5, dtype=torch.float64, generator=generator) * 2 + 1
    upstream = torch.randn(full.shape, dtype=torch.float64, generator=generator)
    reference = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        reference.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    synced = distributed.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3).double()), torch.device("cpu"))[0]
    assert isinstance(synced, distributed.CrossRankBatchNorm), type(synced)
    synced.load_state_dict(reference.state_dict())
    x_full = full.clone().requires_grad_(True)
    out_full = reference(x_full)
    (out_full * upstream).sum().backward()
    rows = slice(rank * 4, (rank + 1) * 4)
    x = full[rows].clone().requires_grad_(True)
    out = synced(x)
    (out * upstream[rows]).sum().backward()
    assert torch.allclose(out, out_full[rows].detach(), atol=1e-10), (out - out_full[rows]).abs().max()
    assert torch.allclose(x.grad, x_full.grad[rows], atol=1e-10), (x.grad - x_full.grad[rows]).abs().max()
    for name in ("weight", "bias"):
        grad = distributed.all_reduce_sum(getattr(synced, name).grad)  # what DDP adds up (before averaging)
        assert torch.allclose(grad, getattr(reference, name).grad, atol=1e-10), name
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(synced, name).double(), getattr(reference, name).double(), atol=1e-12), name


def check_agreement_helpers(rank: int, world: int) -> None:
    assert distributed.max_over_ranks([rank, 0, 5 if rank == world - 1 else 1]) == [world - 1, 0, 5]
    module = nn.BatchNorm1d(2)
    module.running_mean.fill_(float(rank))
    distributed.broadcast_buffers(module)
    assert module.running_mean.tolist() == [0.0, 0.0]
    assert distributed.all_gather_objects({"rank": rank}) == [{"rank": r} for r in range(world)]


def main() -> None:
    ctx, device = distributed.setup("cpu")
    assert ctx.enabled and distributed.is_distributed() and device.type == "cpu", ctx
    distributed.set_gather_enabled(True)
    assert distributed.gather_enabled()
    rank, world = ctx.rank, ctx.world_size
    check_gather_with_grad(rank, world)
    check_all_gather_rows(rank, world)
    check_sharded_classify(rank, world)
    check_cross_rank_batchnorm(rank, world)
    check_agreement_helpers(rank, world)
    distributed.barrier()
    print(f"rank {rank}: collectives ok", flush=True)
    distributed.shutdown()


if __name__ == "__main__":
    main()
