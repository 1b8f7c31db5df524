"""The task split left classification bitwise unchanged.

The digests below were recorded with the trainer as it was before the task interface
(`kdlab/tasks/`) and the trainer split (loop / run state / metric reduction) existed:
a 2-epoch digits teacher and a KD student trained from it. Floating-point results
depend on the torch build and the CPU's vector unit, so the comparison runs only
where those match the recording.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from kdlab.engine.trainer import train

RECORDED_TORCH = "2.14.1"
RECORDED_CPU = "AVX512"
#: the recording machine: an AMD EPYC with AVX512-BF16 and no AMX; oneDNN picks other kernels (other
#: rounding) on CPUs with AMX tiles, e.g. the Intel Xeons some sessions and CI machines run on
RECORDED_VENDOR = "AuthenticAMD"


def _cpu_flags() -> tuple[str, set[str]]:
    """The CPU vendor and feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", set()
    vendor = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("vendor_id")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return vendor, set(flags)


def _same_cpu_as_recorded() -> bool:
    vendor, flags = _cpu_flags()
    return (torch.backends.cpu.get_cpu_capability() == RECORDED_CPU and vendor == RECORDED_VENDOR
            and not any(flag.startswith("amx") for flag in flags))
TEACHER_DIGEST = "83d4d8df2de617ea2762ee4a774fa861a256cf961eb1aad4213b47b550f57a5e"
STUDENT_DIGEST = "e0a60cd295eeb06a7d721f3e0cdf56cf5e6ac9975600f8ad3df8e4a35975b350"

COMMON = [
    "data.name=digits", "data.subset=192", "data.batch_size=32", "trainer.epochs=2", "trainer.num_threads=1",
    "trainer.device=cpu", "trainer.progress=none", "optim.lr=0.05", "schedule.name=cosine", "trainer.seed=3",
    "model.name=resnet8",
]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().contiguous().cpu()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.skipif(
    torch.__version__.split("+")[0] != RECORDED_TORCH or not _same_cpu_as_recorded(),
    reason=f"digests recorded with torch {RECORDED_TORCH} on an AMD {RECORDED_CPU} CPU without AMX",
)
def test_classification_weights_are_bitwise_those_before_the_task_split(tmp_path: Path) -> None:
    previous_threads = torch.get_num_threads()
    try:
        train(None, [*COMMON, f"trainer.out_dir={tmp_path / 't'}"])
        train(None, [
            *COMMON, f"trainer.out_dir={tmp_path / 's'}", f"teacher.checkpoint={tmp_path / 't'}",
            "distill.terms=[{name: ce, weight: 1.0}, {name: kd, weight: 0.9, temperature: 4}]",
        ])
    finally:
        torch.set_num_threads(previous_threads)
    assert state_digest(final_weights(tmp_path / "t")) == TEACHER_DIGEST
    assert state_digest(final_weights(tmp_path / "s")) == STUDENT_DIGEST
