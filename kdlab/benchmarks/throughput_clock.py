"""Time slices of a training loop, driven by the benchmark's parent process.

A worker process runs one configuration's training loop; before every step
the loop calls :meth:`SliceClock.tick`. Between slices the clock blocks on
the parent's next command, so configurations run one at a time, alternating,
while each keeps its state (models, optimizer, data) across slices.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any, Callable, Optional

import torch

WARMUP_STEPS = 3


class Finished(Exception):
    """The parent said stop: unwinds the training loop of the worker."""


class Channel:
    """JSON lines with the parent: commands on stdin, replies on the original stdout.

    Anything else the worker prints (progress lines, warnings) is sent to
    stderr, so it cannot corrupt the replies.
    """

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        self._in = sys.stdin

    def receive(self) -> dict[str, Any]:
        line = self._in.readline()
        if not line:
            raise Finished("the parent closed the channel")
        return json.loads(line)

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()


def peak_memory_mb() -> dict[str, Optional[float]]:
    """This process's peak resident memory (VmHWM) and, on CUDA, peak allocated device memory, in MiB."""
    host: Optional[float] = None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    host = int(line.split()[1]) / 1024.0
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        host = peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
    device = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"host": host, "cuda": device}


class SliceClock:
    """Counts the images trained on in each timed slice, after a few warm-up steps.

    ``tick(images)`` is called before every step with the images of the step
    that just finished (0 for none). States: idle (waiting for a command),
    warm-up, timing.
    """

    def __init__(self, channel: Channel, device: torch.device, warmup: int = WARMUP_STEPS) -> None:
        self.channel = channel
        self.device = device
        self.warmup = warmup
        self.state = "idle"
        self.fresh = False  # True for the first step of a slice (the reference loop restarts its loader)
        #: called when a slice ends, before waiting for the next command (e.g. to stop DataLoader workers)
        self.on_idle: Callable[[], None] = lambda: None
        self._seconds = 0.0
        self._warm_left = 0
        self._started = 0.0
        self._images = 0
        self._steps = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def tick(self, images: int) -> None:
        self.fresh = False
        if self.state == "timing":
            self._images += images
            self._steps += 1
            self._sync()
            elapsed = time.perf_counter() - self._started
            if elapsed >= self._seconds:
                self.channel.send({"images": self._images, "steps": self._steps, "seconds": elapsed})
                self.state = "idle"
                self.on_idle()
        if self.state == "idle":
            command = self.channel.receive()
            if command.get("cmd") != "measure":
                raise Finished(command.get("cmd"))
            self._seconds = float(command["seconds"])
            self._warm_left, self._images, self._steps = int(command.get("warmup", self.warmup)), 0, 0
            self.state, self.fresh = "warmup", True
            if self._warm_left <= 0:
                self._start()
            return
        if self.state == "warmup":
            self._warm_left -= 1
            if self._warm_left <= 0:
                self._start()

    def _start(self) -> None:
        self._sync()
        self._started = time.perf_counter()
        self.state = "timing"
