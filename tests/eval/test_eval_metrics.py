"""topk_accuracy and ClassificationMeter against a per-row sorting reference."""

from __future__ import annotations

import pytest
import torch

from kdlab.eval import ClassificationMeter, topk_accuracy


def naive_topk_percent(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Sort each row's class indices by score and check whether the target is in the first k."""
    rows = logits.tolist()
    hits = 0
    for row, target in zip(rows, targets.tolist()):
        ranked = sorted(range(len(row)), key=lambda j: row[j], reverse=True)
        if target in ranked[:k]:
            hits += 1
    return 100.0 * hits / len(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_classes", [3, 7])
def test_topk_matches_naive_sort(seed: int, num_classes: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(40, num_classes, generator=g)
    targets = torch.randint(0, num_classes, (40,), generator=g)
    result = topk_accuracy(logits, targets, ks=(1, 2, 5))
    assert set(result) == {1, 2, 5}
    for k in (1, 2, 5):
        # k beyond the number of classes is clipped, so top-5 of 3 classes is top-3 (= 100%).
        assert result[k] == pytest.approx(naive_topk_percent(logits, targets, min(k, num_classes)))


def test_topk_known_case() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    targets = torch.tensor([1, 1, 0, 2])
    result = topk_accuracy(logits, targets, ks=(1, 2, 5))
    assert result == {1: 25.0, 2: 50.0, 5: 100.0}


def test_topk_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"targets shape \(4,\) and logits shape \(5, 3\)"):
        topk_accuracy(torch.randn(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"2-D.*\(5,\)"):
        topk_accuracy(torch.randn(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        topk_accuracy(torch.randn(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="positive integer"):
        topk_accuracy(torch.randn(5, 3), torch.zeros(5, dtype=torch.long), ks=(0,))


def _batches(seed: int, sizes: list[int], num_classes: int = 6):
    g = torch.Generator().manual_seed(seed)
    for size in sizes:
        logits = torch.randn(size, num_classes, generator=g)
        targets = torch.randint(0, num_classes, (size,), generator=g)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        yield logits, targets, loss


def test_meter_over_batches_equals_one_shot() -> None:
    batches = list(_batches(0, [7, 5, 12]))
    meter = ClassificationMeter()
    for logits, targets, loss in batches:
        meter.update(logits, targets, loss)
    all_logits = torch.cat([b[0] for b in batches])
    all_targets = torch.cat([b[1] for b in batches])
    expected = topk_accuracy(all_logits, all_targets)
    result = meter.compute()
    assert set(result) == {"top1", "top5", "loss"}
    assert result["top1"] == expected[1]
    assert result["top5"] == expected[5]
    full_loss = torch.nn.functional.cross_entropy(all_logits.double(), all_targets).item()
    assert result["loss"] == pytest.approx(full_loss, rel=1e-6)


def test_meter_merge_equals_one_shot_compute() -> None:
    batches = list(_batches(1, [4, 9, 3, 8]))
    one_shot = ClassificationMeter()
    shard_a, shard_b = ClassificationMeter(), ClassificationMeter()
    for i, (logits, targets, loss) in enumerate(batches):
        one_shot.update(logits, targets, loss)
        (shard_a if i % 2 == 0 else shard_b).update(logits, targets, loss)
    merged = shard_a.merge(shard_b)
    assert merged is shard_a
    assert merged.num_samples == one_shot.num_samples == 24
    assert merged.correct == one_shot.correct
    assert merged.compute()["top1"] == one_shot.compute()["top1"]
    assert merged.compute()["top5"] == one_shot.compute()["top5"]
    assert merged.compute()["loss"] == pytest.approx(one_shot.compute()["loss"], rel=1e-12)


def test_meter_state_sums_like_all_reduce() -> None:
    batches = list(_batches(2, [6, 6, 6]))
    one_shot = ClassificationMeter()
    shards = [ClassificationMeter() for _ in batches]
    for shard, (logits, targets, loss) in zip(shards, batches):
        shard.update(logits, targets, loss)
        one_shot.update(logits, targets, loss)
    states = [s.state() for s in shards]
    assert states[0]["counts"].dtype == torch.int64
    # Emulate a SUM all-reduce: elementwise addition of every process's tensors.
    summed = {key: sum(s[key] for s in states) for key in states[0]}
    reduced = ClassificationMeter()
    reduced.load_state(summed)
    assert reduced.correct == one_shot.correct
    assert reduced.compute()["top1"] == one_shot.compute()["top1"]
    assert reduced.compute()["loss"] == pytest.approx(one_shot.compute()["loss"], rel=1e-12)
    # A state dict can also be merged directly.
    fresh = ClassificationMeter().merge(summed)
    assert fresh.correct == one_shot.correct


def test_meter_loss_variants() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    targets = torch.tensor([0, 1, 1])
    meter = ClassificationMeter(ks=(1,))
    meter.update(logits, targets)
    assert meter.compute() == {"top1": pytest.approx(200 / 3), "loss": None}
    meter.reset()
    meter.update(logits[:2], targets[:2], loss=1.0)
    meter.update(logits[2:], targets[2:], loss=torch.tensor([4.0]))
    assert meter.compute()["loss"] == pytest.approx((1.0 * 2 + 4.0) / 3)
    meter.reset()
    meter.update(logits, targets, loss=torch.tensor([1.0, 2.0, 6.0]))
    assert meter.compute()["loss"] == pytest.approx(3.0)


def test_meter_errors() -> None:
    meter = ClassificationMeter()
    with pytest.raises(ValueError, match="before any update"):
        meter.compute()
    with pytest.raises(ValueError, match=r"\(2,\)"):
        meter.update(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), loss=torch.ones(2))
    with pytest.raises(ValueError, match="different ks"):
        meter.merge(ClassificationMeter(ks=(1,)))
    with pytest.raises(ValueError, match="missing keys"):
        meter.load_state({"counts": torch.zeros(4, dtype=torch.long)})
