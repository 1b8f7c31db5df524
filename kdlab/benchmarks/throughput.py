"""``kdlab bench throughput``: training images/s and peak memory of KD, four ways, side by side.

1. ``reference``: a plain PyTorch KD loop as the published implementations
   write it (:mod:`kdlab.benchmarks.throughput_reference`);
2. ``student_only``: kdlab's trainer with the cross-entropy term alone (the
   cost of training the student without a teacher);
3. ``distill_live``: kdlab's trainer distilling with the teacher run live;
4. ``distill_cached``: kdlab's trainer reading the teacher from a
   teacher-output cache (built beforehand; its build time is reported, not
   counted).

A detection config (``task: detection``) is measured two ways: ``student_only``
(the detector's own losses, ``det``) and ``distill_live`` (its distillation terms
with the teacher detector run live); there is no reference loop or cache there.

Each configuration runs in its own worker process (separate peak-memory
readings) and the parent alternates short timed slices between them, so a
machine whose load changes during the benchmark affects all four alike.
Every slice starts with a few untimed warm-up steps. The headline images/s
of a configuration is its best slice (other processes only ever slow a slice
down); the median and the mean over slices are reported next to it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from kdlab.benchmarks.throughput_clock import WARMUP_STEPS
from kdlab.benchmarks.throughput_worker import KINDS

#: what a detection config is measured as
DETECTION_KINDS = ("student_only", "distill_live")
from kdlab.config import Config, ConfigError, TeacherConfig, to_dict
from kdlab.engine.builders import channels_last

#: ratio -> the target this machine should reach (see docs/performance.md)
TARGETS = {
    "distill_live/reference": 1.4,
    "distill_cached/student_only": 0.95,
    "distill_cached/reference": 2.0,
}
_STDERR_TAIL = 3000


class BenchmarkError(RuntimeError):
    """A benchmark worker failed; the message names the configuration and shows its error output."""


def configuration(kind: str, cfg: Config, *, out_dir: Path, cache: Optional[Path], epochs: int) -> Config:
    """The config a kdlab configuration trains with (its own out_dir, no progress output)."""
    trainer = dataclasses.replace(cfg.trainer, out_dir=str(out_dir / kind), progress="none", epochs=epochs)
    distill = dataclasses.replace(cfg.distill, teacher_cache=None)
    teacher = cfg.teacher
    if kind == "student_only":
        plain = "det" if cfg.task == "detection" else "ce"
        distill = dataclasses.replace(distill, terms=[{"name": plain, "weight": 1.0}])
        teacher = TeacherConfig()
    elif kind == "distill_cached":
        distill = dataclasses.replace(distill, teacher_cache=str(cache))
    return dataclasses.replace(cfg, trainer=trainer, distill=distill, teacher=teacher)


class _Worker:
    """A worker process and its JSON-lines channel."""

    def __init__(self, kind: str, cfg: Config, workdir: Path, threads: Optional[int]) -> None:
        self.kind = kind
        self.log = (workdir / f"{kind}.stderr").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kdlab.benchmarks.throughput_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
        )
        self.send({"kind": kind, "config": to_dict(cfg), "threads": threads, "workdir": str(workdir)})

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._failure("exited early") from None

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise self._failure("exited without answering")
        reply = json.loads(line)
        if "error" in reply:
            raise self._failure(reply["error"])
        return reply

    def _failure(self, what: str) -> BenchmarkError:
        self.log.flush()
        self.log.seek(0)
        tail = self.log.read()[-_STDERR_TAIL:]
        return BenchmarkError(f"benchmark configuration {self.kind!r} failed: {what}\n--- its error output ---\n{tail}")

    def finish(self) -> None:
        """Close the command channel: a worker still waiting for a command then exits."""
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def close(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            try:
                self.finish()
                self.process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.log.close()


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so that the workers and the temporary folder are cleaned up on the way out."""

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(progress: Optional[Callable[[str], None]], message: str) -> None:
    if progress is not None:
        progress(message)


def bench_throughput(
    cfg: Config,
    *,
    seconds: float = 20.0,
    rounds: int = 4,
    cache: Optional[str | Path] = None,
    cache_epochs: int = 1,
    warmup_steps: int = WARMUP_STEPS,
    threads: Optional[int] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> dict[str, Any]:
    """Measure the four configurations on ``cfg`` (a KD config over an ImageFolder dataset).

    Args:
        seconds: timed seconds per configuration, split into ``rounds`` alternating slices.
        cache: teacher-cache folder to use or build (default: a temporary one, deleted afterwards).
        cache_epochs: epochs the cache holds (the timed loop cycles through them).
        warmup_steps: untimed steps at the start of every slice.
        threads: torch intra-op threads of every configuration (default: torch's default, one per core).
        progress: called with one line per phase (e.g. ``print`` to stderr), or None.

    Returns a JSON-able dict: ``<kind>_ips`` (best slice), ``ips_median``,
    ``ips_mean``, ``ratios`` (of the best slices), ``ratios_median``,
    ``targets_met``, ``peak_memory_mb`` (host VmHWM per configuration),
    ``peak_memory_above_baseline_mb`` (the same minus the reading after the
    imports), ``cuda_peak_memory_mb``, ``slices_ips``, ``cache`` and the settings.
    """
    from kdlab.benchmarks.throughput_reference import kd_settings

    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if not (math.isfinite(seconds) and seconds > 0) or rounds < 1 or warmup_steps < 0:  # inf/nan: never-ending slices
        raise ConfigError(
            f"--seconds must be finite and > 0, --rounds >= 1 and --warmup-steps >= 0, "
            f"got {seconds}, {rounds}, {warmup_steps}"
        )
    if cfg.task == "detection":
        if not (cfg.teacher.name or cfg.teacher.checkpoint):
            raise ConfigError("bench throughput compares a student with its distillation: the config needs a teacher")
        with _sigterm_as_exit():
            return _run(cfg, seconds=seconds, rounds=rounds, cache=None, cache_epochs=cache_epochs,
                        warmup_steps=warmup_steps, threads=threads, progress=progress, kinds=DETECTION_KINDS)
    kd_settings(cfg)  # the config must be a KD config
    if cfg.data.name != "imagefolder":
        raise ConfigError(f"bench throughput compares with torchvision's ImageFolder: data.name must be imagefolder, "
                          f"got {cfg.data.name!r}")
    with _sigterm_as_exit():
        return _run(cfg, seconds=seconds, rounds=rounds, cache=cache, cache_epochs=cache_epochs,
                    warmup_steps=warmup_steps, threads=threads, progress=progress)


def _run(cfg: Config, *, seconds: float, rounds: int,
         cache: Optional[str | Path], cache_epochs: int, warmup_steps: int, threads: Optional[int],
         progress: Optional[Callable[[str], None]], kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """Build the cache, start the workers, alternate the slices; always stop the workers and clean up."""
    from kdlab.cache import build_cache_from_config

    workdir = Path(tempfile.mkdtemp(prefix="kdlab-bench-throughput-"))
    workers: list[_Worker] = []
    try:
        cache_path = Path(cache) if cache is not None else workdir / "teacher-cache"
        cache_info: Optional[dict[str, Any]] = None
        epochs = cfg.trainer.epochs
        if "distill_cached" in kinds:
            _say(progress, f"teacher cache: {cache_path} ({cache_epochs} epoch(s))")
            started = time.perf_counter()
            cache_cfg = configuration("distill_cached", cfg, out_dir=workdir, cache=cache_path, epochs=cache_epochs)
            teacher_cache, built = build_cache_from_config(cache_cfg, cache_path, epochs=cache_epochs, progress=False)
            cache_info = {**teacher_cache.describe(), "built": built, "seconds": time.perf_counter() - started}
            epochs = min(cfg.trainer.epochs, teacher_cache.epochs)

        _say(progress, f"starting the {len(kinds)} configurations: " + ", ".join(kinds))
        for kind in kinds:
            kind_cfg = configuration(kind, cfg, out_dir=workdir, cache=cache_path, epochs=epochs)
            workers.append(_Worker(kind, kind_cfg, workdir, threads))
        ready = {w.kind: w.receive() for w in workers}

        slices: dict[str, list[dict[str, Any]]] = {w.kind: [] for w in workers}
        for round_index in range(rounds):
            shift = round_index % len(workers)
            for worker in workers[shift:] + workers[:shift]:
                worker.send({"cmd": "measure", "seconds": seconds / rounds, "warmup": warmup_steps})
                reply = worker.receive()
                slices[worker.kind].append(reply)
                speed = reply["images"] / reply["seconds"]
                _say(progress, f"round {round_index + 1}/{rounds} {worker.kind:<15} {speed:8.1f} images/s")
        for worker in workers:  # all at once: the workers wind down in parallel
            worker.send({"cmd": "stop"})
        memory = {worker.kind: worker.receive()["peak_memory_mb"] for worker in workers}
    finally:
        for worker in workers:
            worker.finish()
        for worker in workers:
            worker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return _summary(cfg, slices, memory, ready, cache_info, seconds, rounds, warmup_steps, threads, kinds)


def _above(memory: dict[str, Any]) -> Optional[float]:
    """Peak host memory beyond the worker's reading after importing torch, torchvision and kdlab."""
    if memory.get("host") is None or memory.get("baseline") is None:
        return None
    return memory["host"] - memory["baseline"]


def _ratios(ips: dict[str, float], names: Any = TARGETS) -> dict[str, float]:
    out = {}
    for name in names:
        top, bottom = name.split("/")
        out[name] = ips[top] / ips[bottom] if ips[bottom] else float("inf")
    return out


def _summary(cfg: Config, slices: dict[str, list[dict[str, Any]]], memory: dict[str, dict[str, Any]],
             ready: dict[str, dict[str, Any]], cache_info: Optional[dict[str, Any]], seconds: float, rounds: int,
             warmup_steps: int, threads: Optional[int], kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    speeds = {kind: [s["images"] / s["seconds"] for s in runs] for kind, runs in slices.items()}
    best = {kind: max(values) for kind, values in speeds.items()}
    median = {kind: statistics.median(values) for kind, values in speeds.items()}
    mean = {kind: sum(s["images"] for s in runs) / sum(s["seconds"] for s in runs) for kind, runs in slices.items()}

    # Headline: the least-disturbed slice of each configuration (best of N, as timeit advises: on a
    # shared machine other processes only ever slow a slice down); median and mean are reported too.
    result: dict[str, Any] = {f"{kind}_ips": best[kind] for kind in kinds}
    # detection has no targets: the live teacher's cost is reported as the fraction of the student's speed
    targets = TARGETS if kinds == KINDS else {}
    names = list(TARGETS) if kinds == KINDS else ["distill_live/student_only"]
    ratios = _ratios(best, names)
    result.update(
        task=cfg.task,
        kinds=list(kinds),
        ratios=ratios,
        ratios_median=_ratios(median, names),
        ips_median=median,
        ips_mean=mean,
        targets=dict(targets),
        targets_met={name: ratios[name] >= target for name, target in targets.items()},
        peak_memory_mb={kind: memory[kind]["host"] for kind in kinds},
        peak_memory_above_baseline_mb={kind: _above(memory[kind]) for kind in kinds},
        cuda_peak_memory_mb={kind: memory[kind]["cuda"] for kind in kinds},
        slices_ips=speeds,
        setup_seconds={kind: ready[kind]["setup_seconds"] for kind in kinds},
        device=ready["distill_live"]["device"],
        cache=cache_info,
        batch_size=cfg.data.batch_size,
        seconds=seconds,
        rounds=rounds,
        warmup_steps=warmup_steps,
        channels_last=channels_last(cfg),
        precision=cfg.trainer.precision,
        torch_threads=threads or torch.get_num_threads(),
        torch_version=torch.__version__,
    )
    return result
