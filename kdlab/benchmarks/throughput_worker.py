"""One configuration of ``kdlab bench throughput``, in its own process (``python -m`` this module).

A process per configuration gives each its own peak-memory reading (VmHWM)
and keeps them from sharing caches or allocator state. The parent sends the
configuration, then alternates ``measure`` commands between the workers.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from kdlab.benchmarks.throughput_clock import Channel, Finished, SliceClock, peak_memory_mb

#: the four configurations, in the order they are reported
KINDS = ("reference", "student_only", "distill_live", "distill_cached")


class TimedStream:
    """A training stream that ticks the clock before handing out each batch and never ends an epoch.

    Epochs of the wrapped stream follow one another (cycling through the
    cached ones for a cache-fed stream), so the trainer never reaches its
    end-of-epoch evaluation and checkpoint: only training steps are timed.
    """

    def __init__(self, inner: Any, clock: SliceClock) -> None:
        self.inner = inner
        self.clock = clock
        self.steps_per_epoch = 1 << 40
        self._cycle: Optional[int] = getattr(getattr(inner, "cache", None), "epochs", None)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, Any]]:  # noqa: ARG002
        images, count = 0, 0
        while True:
            for batch in self.inner.epoch(count % self._cycle if self._cycle else count):
                self.clock.tick(images)
                images = len(batch["images"]) if "images" in batch else int(batch["image"].shape[0])
                yield batch
            count += 1


def run_trainer(cfg: Any, channel: Channel) -> None:
    """Time the real kdlab training loop (``Trainer.fit``) on this configuration."""
    from kdlab.engine.trainer import Trainer

    started = time.perf_counter()
    trainer = Trainer(cfg)
    clock = SliceClock(channel, trainer.device)
    trainer.data = dataclasses.replace(trainer.data, train=TimedStream(trainer.data.train, clock))
    channel.send({"ready": True, "setup_seconds": time.perf_counter() - started, "device": str(trainer.device)})
    trainer.fit()
    raise RuntimeError("the training loop ended before the benchmark said stop")


def run_reference(cfg: Any, channel: Channel, workdir: Optional[str]) -> None:
    """Time the plain PyTorch reference loop."""
    from kdlab.benchmarks.throughput_reference import ReferenceKD
    from kdlab.engine.builders import resolve_device

    started = time.perf_counter()
    device = resolve_device(cfg.trainer.device)
    reference = ReferenceKD(cfg, device, Path(workdir) if workdir else None)
    clock = SliceClock(channel, device)
    state: dict[str, Any] = {"batches": None}

    def stop_loader() -> None:
        state["batches"] = None  # the iterator's worker processes exit with it

    clock.on_idle = stop_loader
    channel.send({"ready": True, "setup_seconds": time.perf_counter() - started, "device": str(device)})
    images = 0
    try:
        while True:
            clock.tick(images)
            if state["batches"] is None:
                state["batches"] = reference.batches()
            try:
                batch = next(state["batches"])
            except StopIteration:
                state["batches"] = reference.batches()
                batch = next(state["batches"])
            images = reference.step(batch)
    finally:
        state["batches"] = None
        reference.close()


def main() -> int:
    channel = Channel()
    try:
        setup = channel.receive()
    except Finished:
        return 1
    kind = setup.get("kind")
    if setup.get("threads"):
        torch.set_num_threads(int(setup["threads"]))
    # Every worker imports the same libraries before its baseline reading, so that
    # peak - baseline is what the configuration itself (data, networks, activations) costs.
    import kdlab.benchmarks.throughput_reference  # noqa: F401  (torchvision)
    import kdlab.engine.trainer  # noqa: F401

    baseline = peak_memory_mb()["host"]
    try:
        from kdlab.config import from_dict

        cfg = from_dict(setup["config"])
        if kind == "reference":
            run_reference(cfg, channel, setup.get("workdir"))
        elif kind in KINDS:
            run_trainer(cfg, channel)
        else:
            raise ValueError(f"unknown benchmark configuration {kind!r}; expected one of {KINDS}")
    except Finished:
        channel.send({"peak_memory_mb": {**peak_memory_mb(), "baseline": baseline}})
        return 0
    except BaseException as err:  # report anything to the parent, which names the configuration
        traceback.print_exc(file=sys.stderr)
        channel.send({"error": f"{type(err).__name__}: {err}"})
        return 1
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
