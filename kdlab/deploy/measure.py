"""What one network costs to deploy, measured on the CPU: parameters, MACs, size on disk, latency.

The conventions, stated once (``kdlab profile`` prints and records them):

- **parameters**: ``sum(p.numel())`` over ``model.parameters()`` (buffers such as BatchNorm's running
  statistics are not parameters; they count in the size on disk).
- **MACs** per image: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward at batch 1,
  FLOPs / 2 (one multiply-accumulate = two FLOPs). It counts matrix products and convolutions
  (``mm``, ``addmm``, ``bmm``, ``convolution``, attention, ...); elementwise work (BatchNorm,
  activations, pooling, additions) is not counted, as in most published MAC counts.
- **size**: bytes of ``torch.save(state_dict)`` (what a checkpoint of the bare network weighs), in
  MB = 10^6 bytes; fp32 with every floating tensor as float32, fp16 with every floating tensor as
  float16 (integer buffers stay as they are).
- **latency**: wall time of one forward under ``torch.inference_mode`` on the CPU with a fixed
  number of threads, after warm-up forwards; the median over repeated forwards, with the
  quartiles, minimum and maximum as the spread. Repeats stop early once a measurement has taken
  ``max_seconds`` (never before :data:`MIN_RUNS` forwards), so a large model at a large batch
  stays affordable; the number of forwards done is recorded.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
from torch import nn

#: fewest timed forwards of any latency measurement (quartiles need a few points)
MIN_RUNS = 3
#: bytes per MB in sizes (decimal megabytes, as disk sizes are usually shown)
BYTES_PER_MB = 10**6

MACS_CONVENTION = (
    "MACs per image = FLOPs / 2 of torch.utils.flop_counter.FlopCounterMode at batch 1 "
    "(matrix products and convolutions; elementwise ops such as BatchNorm, activations and pooling not counted)"
)
SIZE_CONVENTION = "size = bytes of torch.save(state_dict) in MB (10^6 bytes); fp16 = floating tensors as float16"
LATENCY_CONVENTION = (
    "latency = median wall time of one forward (torch.inference_mode, CPU) after warm-up, "
    "spread = quartiles [p25-p75] and min/max over the timed forwards"
)


@dataclass(frozen=True)
class TimingSettings:
    """How latency is measured: threads, warm-up forwards, timed forwards, the time cap, the large batch."""

    threads: int = 1
    warmup: int = 3
    repeats: int = 20
    max_seconds: float = 5.0
    batch_size: int = 64

    def validate(self) -> None:
        from kdlab.config import ConfigError

        for name in ("threads", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be at least 0, got {self.warmup}")
        if self.repeats < MIN_RUNS:
            raise ConfigError(f"--repeats must be at least {MIN_RUNS} (for a median and quartiles), got {self.repeats}")
        if not self.max_seconds > 0:
            raise ConfigError(f"--max-seconds must be positive, got {self.max_seconds}")


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward at one batch size, in milliseconds."""

    batch_size: int
    median_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    max_ms: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def images_per_second(self) -> float:
        return self.batch_size / (self.median_ms / 1000.0) if self.median_ms > 0 else float("inf")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward of ``example`` (batch 1 gives MACs per image): FLOPs / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(example)
    return int(counter.get_total_flops()) // 2


def state_dict_bytes(model: nn.Module, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of ``torch.save`` of the state dict with every floating tensor as ``dtype``."""
    state = {
        key: (value.detach().to(dtype) if torch.is_floating_point(value) else value.detach())
        for key, value in model.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block; the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_forward(model: nn.Module, example: torch.Tensor, settings: TimingSettings) -> Latency:
    """Latency of ``model(example)``: warm-up forwards, then up to ``repeats`` timed ones (see module doc)."""
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(settings.warmup):
            model(example)
        started = time.perf_counter()
        while len(times) < settings.repeats:
            begin = time.perf_counter()
            model(example)
            times.append((time.perf_counter() - begin) * 1000.0)
            if len(times) >= MIN_RUNS and time.perf_counter() - started > settings.max_seconds:
                break
    quartiles = statistics.quantiles(times, n=4, method="inclusive")
    return Latency(batch_size=int(example.shape[0]), median_ms=statistics.median(times), p25_ms=quartiles[0],
                   p75_ms=quartiles[2], min_ms=min(times), max_ms=max(times), runs=len(times))


def example_batch(batch: int, in_chans: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """A random normalised-looking input batch (N, C, H, W); the values do not change the cost."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_chans, image_size, image_size, generator=generator)


def measure_network(model: nn.Module, in_chans: int, image_size: int, settings: TimingSettings) -> dict[str, Any]:
    """Parameters, MACs per image, size on disk and latency of ``model`` (in eval mode, on the CPU).

    The model is measured as it is (no BatchNorm folding, no compilation), in eval mode; its
    training mode is restored after. Latency runs under ``settings.threads`` threads, restored after.
    """
    was_training = model.training
    model.eval()
    try:
        with torch_threads(settings.threads):
            single = example_batch(1, in_chans, image_size)
            macs = count_macs(model, single)
            batch1 = time_forward(model, single, settings)
            large = time_forward(model, example_batch(settings.batch_size, in_chans, image_size, seed=1), settings)
    finally:
        model.train(was_training)
    return {
        "params": count_parameters(model),
        "macs": macs,
        "size_mb": state_dict_bytes(model, torch.float32) / BYTES_PER_MB,
        "size_mb_fp16": state_dict_bytes(model, torch.float16) / BYTES_PER_MB,
        "latency_ms_batch1": batch1.median_ms,
        "latency_ms_batch": large.median_ms,
        "images_per_second": large.images_per_second,
        "latency": {"batch1": batch1.to_dict(), "batch": large.to_dict()},
    }


__all__ = [
    "BYTES_PER_MB",
    "LATENCY_CONVENTION",
    "MACS_CONVENTION",
    "MIN_RUNS",
    "SIZE_CONVENTION",
    "Latency",
    "TimingSettings",
    "count_macs",
    "count_parameters",
    "example_batch",
    "measure_network",
    "state_dict_bytes",
    "time_forward",
    "torch_threads",
]
