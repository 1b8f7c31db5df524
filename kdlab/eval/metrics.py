"""Top-k classification accuracy and an exact, mergeable accumulator for it.

Correct predictions are counted as integers (never as running float averages) so that an
evaluation split across batches or processes sums to exactly the same numbers as a single
pass over the whole data set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from kdlab.eval._checks import normalise_ks as _normalise_ks, require_2d, require_labels


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    require_2d("logits", logits)
    require_labels("targets", targets, logits, "logits")


def topk_correct_counts(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[int, int]:
    """Number of rows whose target is among the ``k`` highest logits, for each k in ``ks``.

    ``k`` is clipped to the number of classes (top-5 of a 3-class problem is top-3).
    Returned keys are the requested ks, unclipped.
    """
    ks = _normalise_ks(ks)
    _check_logits_targets(logits, targets)
    num_classes = logits.shape[1]
    max_k = min(max(ks), num_classes)
    # One sorted top-k for the largest k; smaller ks are prefixes of it.
    top = logits.detach().topk(max_k, dim=1, largest=True, sorted=True).indices
    hits = top.eq(targets.detach().to(top.device).unsqueeze(1))
    return {k: int(hits[:, : min(k, num_classes)].any(dim=1).sum().item()) for k in ks}


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy in percent for each ``k`` in ``ks``.

    Args:
        logits: (N, C) class scores.
        targets: (N,) integer class indices.
        ks: which k values to report; each is clipped to C.

    Returns:
        ``{k: percent}`` keyed by the requested ks.
    """
    counts = topk_correct_counts(logits, targets, ks)
    n = logits.shape[0]
    return {k: 100.0 * c / n for k, c in counts.items()}


class ClassificationMeter:
    """Accumulates top-k correct counts and the loss over batches.

    Counts are exact Python integers. The loss is accumulated as ``loss * batch_size`` in
    float64, so the reported loss is the per-sample mean over everything seen.

    For sharded evaluation, each process calls :meth:`state` to get tensors, all-reduces
    them with SUM, and loads the result with :meth:`load_state`::

        state = meter.state(device=device)
        for t in state.values():
            torch.distributed.all_reduce(t)
        meter.load_state(state)

    Two meters in one process can be combined with :meth:`merge`.
    """

    def __init__(self, ks: Sequence[int] = (1, 5)) -> None:
        self.ks = _normalise_ks(ks)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.num_samples = 0
        self.correct = {k: 0 for k in self.ks}
        self.loss_sum = 0.0
        self.loss_samples = 0

    def update(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        loss: float | torch.Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            logits: (B, C) class scores.
            targets: (B,) integer class indices.
            loss: the batch's *mean* loss (a float or a one-element tensor), weighted by B
                when accumulated; or a (B,) tensor of per-sample losses, which are summed.
                ``None`` leaves the loss untouched (e.g. when no criterion is available).
        """
        counts = topk_correct_counts(logits, targets, self.ks)
        batch = logits.shape[0]
        self.num_samples += batch
        for k, c in counts.items():
            self.correct[k] += c
        if loss is None:
            return
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()
            if loss.numel() == 1:
                self.loss_sum += float(loss.double().item()) * batch
            elif loss.dim() == 1 and loss.shape[0] == batch:
                self.loss_sum += float(loss.double().sum().item())
            else:
                raise ValueError(
                    f"loss must be a scalar (batch mean) or a ({batch},) per-sample tensor, "
                    f"got shape {tuple(loss.shape)} for logits of shape {tuple(logits.shape)}"
                )
        else:
            self.loss_sum += float(loss) * batch
        self.loss_samples += batch

    def compute(self) -> dict[str, float | None]:
        """Return ``{"top1", "top5", "loss"}`` (percent, percent, mean loss).

        Keys are ``f"top{k}"`` for every configured k; ``loss`` is None if no batch gave one.
        """
        if self.num_samples == 0:
            raise ValueError("ClassificationMeter.compute() called before any update (0 samples seen)")
        result: dict[str, float | None] = {
            f"top{k}": 100.0 * self.correct[k] / self.num_samples for k in self.ks
        }
        result["loss"] = self.loss_sum / self.loss_samples if self.loss_samples else None
        return result

    def state(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Sufficient statistics as tensors, ready to be SUM all-reduced.

        Returns:
            ``{"counts": int64 [num_samples, loss_samples, correct@k for k in ks],
            "loss_sum": float64 [1]}``. Integer counts stay exact under summation.
        """
        counts = [self.num_samples, self.loss_samples] + [self.correct[k] for k in self.ks]
        return {
            "counts": torch.tensor(counts, dtype=torch.int64, device=device),
            "loss_sum": torch.tensor([self.loss_sum], dtype=torch.float64, device=device),
        }

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the accumulated statistics with ``state`` (as produced by :meth:`state`)."""
        missing = {"counts", "loss_sum"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}; got keys {sorted(state)}")
        counts = state["counts"]
        expected = 2 + len(self.ks)
        if counts.dim() != 1 or counts.shape[0] != expected:
            raise ValueError(
                f"state['counts'] must have shape ({expected},) for ks={self.ks}, got {tuple(counts.shape)}"
            )
        values = [int(v) for v in counts.tolist()]
        self.num_samples, self.loss_samples = values[0], values[1]
        self.correct = dict(zip(self.ks, values[2:]))
        self.loss_sum = float(state["loss_sum"].double().sum().item())

    def merge(self, other: ClassificationMeter | Mapping[str, torch.Tensor]) -> ClassificationMeter:
        """Add another meter's (or another state dict's) statistics into this one; returns self."""
        if isinstance(other, ClassificationMeter):
            if other.ks != self.ks:
                raise ValueError(f"cannot merge meters with different ks: {self.ks} vs {other.ks}")
            other_state = other.state()
        else:
            other_meter = ClassificationMeter(self.ks)
            other_meter.load_state(other)
            other_state = other_meter.state()
        mine = self.state()
        self.load_state({key: mine[key] + other_state[key] for key in mine})
        return self

    def __repr__(self) -> str:
        return (
            f"ClassificationMeter(ks={self.ks}, num_samples={self.num_samples}, "
            f"correct={self.correct}, loss_samples={self.loss_samples})"
        )
