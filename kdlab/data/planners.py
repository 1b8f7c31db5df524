"""Batch planners: which sample indices make up each step of an epoch.

A planner returns the whole epoch as a LongTensor (steps, global_batch),
computed from a generator seeded by (seed, epoch) only. Each process then
takes its own columns (:func:`rank_columns`), so the union over ranks of one
row is exactly the batch a single process would see.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import DataError
from .seeding import generator_for


class RandomBatchPlanner:
    """Shuffled batches of a fixed global size, reshuffled every epoch.

    With ``drop_last=False`` the last, partial row is completed with the first
    indices of the same permutation (as DistributedSampler pads), so every row
    has ``global_batch`` entries.
    """

    def __init__(self, num_samples: int, global_batch: int, seed: int, drop_last: bool = True) -> None:
        if num_samples < 1:
            raise DataError(f"RandomBatchPlanner: num_samples must be >= 1, got {num_samples}")
        if global_batch < 1:
            raise DataError(f"RandomBatchPlanner: global_batch must be >= 1, got {global_batch}")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.seed = seed
        self.drop_last = drop_last

    @property
    def steps(self) -> int:
        """Rows of every plan."""
        if self.drop_last:
            return self.num_samples // self.global_batch
        return -(-self.num_samples // self.global_batch)

    def plan(self, epoch: int) -> torch.Tensor:
        """The epoch's batches as a LongTensor (steps, global_batch)."""
        order = torch.randperm(self.num_samples, generator=generator_for("order", self.seed, epoch))
        total = self.steps * self.global_batch
        if total > self.num_samples:
            repeats = -(-total // self.num_samples)
            order = order.repeat(repeats)
        return order[:total].reshape(self.steps, self.global_batch)


class KnnBatchPlanner:
    """CoSS-style batches: anchors each followed by some of their nearest neighbours.

    Every row holds ``anchors`` groups of ``1 + neighbours_per_anchor``
    indices: an anchor, then neighbours drawn without replacement from its
    first ``pool`` neighbours. Anchors are a fresh permutation of the dataset
    each epoch, taken in order; an epoch has ``N // anchors`` steps.
    ``neighbours[i]`` should list the neighbours of sample i, nearest first,
    without i itself.
    """

    def __init__(
        self,
        neighbours: torch.Tensor,
        anchors: int,
        neighbours_per_anchor: int = 15,
        pool: int = 31,
        seed: int = 0,
    ) -> None:
        if neighbours.ndim != 2:
            raise DataError(f"KnnBatchPlanner: neighbours must be (N, K), got shape {tuple(neighbours.shape)}")
        num_samples, width = neighbours.shape
        if neighbours.dtype.is_floating_point or neighbours.dtype == torch.bool:
            raise DataError(f"KnnBatchPlanner: neighbours must be an integer tensor, got {neighbours.dtype}")
        if num_samples and (int(neighbours.min()) < 0 or int(neighbours.max()) >= num_samples):
            raise DataError(
                f"KnnBatchPlanner: neighbour indices must lie in [0, {num_samples}), "
                f"got min {int(neighbours.min())}, max {int(neighbours.max())}"
            )
        if anchors < 1 or anchors > num_samples:
            raise DataError(f"KnnBatchPlanner: anchors must be in [1, {num_samples}] (N), got {anchors}")
        effective_pool = min(pool, width)
        if neighbours_per_anchor > effective_pool:
            raise DataError(
                f"KnnBatchPlanner: cannot draw {neighbours_per_anchor} neighbours per anchor from a pool of "
                f"{effective_pool} (pool={pool}, neighbour table width K={width})"
            )
        self.neighbours = neighbours.to(device="cpu", dtype=torch.long)
        self.anchors = anchors
        self.neighbours_per_anchor = neighbours_per_anchor
        self.pool = effective_pool
        self.seed = seed

    @property
    def group_size(self) -> int:
        """Indices per anchor group (the anchor and its drawn neighbours)."""
        return 1 + self.neighbours_per_anchor

    @property
    def global_batch(self) -> int:
        return self.anchors * self.group_size

    @property
    def steps(self) -> int:
        return self.neighbours.shape[0] // self.anchors

    def plan(self, epoch: int) -> torch.Tensor:
        """The epoch's batches as a LongTensor (steps, anchors * (1 + neighbours_per_anchor))."""
        generator = generator_for("knn-order", self.seed, epoch)
        num_samples = self.neighbours.shape[0]
        anchor_ids = torch.randperm(num_samples, generator=generator)[: self.steps * self.anchors]
        # Sampling without replacement for all anchors at once: the first k of
        # a random ordering of each anchor's pool (argsort of uniform keys).
        keys = torch.rand(anchor_ids.numel(), self.pool, generator=generator)
        picks = keys.argsort(dim=1)[:, : self.neighbours_per_anchor]
        drawn = self.neighbours[anchor_ids, : self.pool].gather(1, picks)
        groups = torch.cat([anchor_ids[:, None], drawn], dim=1)
        return groups.reshape(self.steps, self.global_batch)


def rank_columns(global_batch: int, rank: int, world_size: int, *, group_size: int = 1) -> slice:
    """The columns of a planned row that process ``rank`` of ``world_size`` takes.

    Raises DataError when the global batch (``data.batch_size``) does not split
    evenly, or when a rank's share would cut a knn anchor group.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    if global_batch % world_size:
        raise DataError(
            f"data.batch_size={global_batch} (the global batch) is not divisible by the world size {world_size}"
        )
    per_rank = global_batch // world_size
    if per_rank % group_size:
        raise DataError(
            f"data.batch_size={global_batch} over {world_size} processes gives {per_rank} per process, "
            f"which is not a multiple of the knn anchor group size {group_size} (1 + data.knn_neighbours)"
        )
    return slice(rank * per_rank, (rank + 1) * per_rank)


def load_knn_neighbours(path: str | Path, num_samples: int) -> torch.Tensor:
    """The (N, K) neighbour table of a ``data.knn_index`` file, checked against the training-set size."""
    from kdlab.checkpoint_io import CheckpointError, torch_load_checked

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data.knn_index: neighbour file {path} does not exist")
    try:
        payload = torch_load_checked(path, what="data.knn_index: the neighbour file")
    except CheckpointError as err:
        raise DataError(str(err)) from None
    if not isinstance(payload, dict) or "neighbours" not in payload:
        found = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise DataError(f"data.knn_index: {path} must hold a dict with a 'neighbours' (N, K) tensor, found {found}")
    neighbours = payload["neighbours"]
    if not isinstance(neighbours, torch.Tensor) or neighbours.ndim != 2 or neighbours.is_floating_point():
        shape = tuple(neighbours.shape) if isinstance(neighbours, torch.Tensor) else type(neighbours).__name__
        raise DataError(f"data.knn_index: 'neighbours' in {path} must be an (N, K) tensor, got {shape}")
    if neighbours.shape[0] != num_samples:
        raise DataError(
            f"data.knn_index: {path} has neighbours for {neighbours.shape[0]} samples, "
            f"but the training set has {num_samples} (check data.subset)"
        )
    return neighbours
