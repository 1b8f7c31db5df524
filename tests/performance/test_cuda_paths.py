"""kdlab's CUDA paths on a GPU: bf16 autocast, channels_last, fused optimizers, the deferred finite check,
pinned copies, exact resume, NCCL DDP. Marked ``cuda``; skipped on a machine without one.

``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda``) with a short CUDA distillation run and
``kdlab bench throughput`` on CUDA. The CPU fallbacks of the same code are tested everywhere else.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from kdlab.config import load_config
from kdlab.engine import builders
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import NonFiniteLossError, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))
from _fault_helpers import TINY  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs these)"),
]

ON_CUDA = [o for o in TINY if not o.startswith("trainer.device=")] + ["trainer.device=cuda"]


def _trainer(out: Path, *overrides: str) -> Trainer:
    return Trainer(load_config(None, [*ON_CUDA, f"trainer.out_dir={out}", *overrides]))


def test_bf16_channels_last_training_runs_on_cuda_and_its_checkpoint_loads_on_the_cpu(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "bf16", "trainer.epochs=2", "trainer.precision=bf16", "trainer.channels_last=true")
    assert trainer.autocast is not None and trainer.autocast.device == "cuda"
    assert trainer.autocast.fast_dtype == torch.bfloat16
    conv = next(m for m in trainer.student.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    result = trainer.fit()
    assert result.completed and all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    state = load_checkpoint_file(tmp_path / "bf16" / "checkpoints" / "last.pt")
    assert all(v.device.type == "cpu" for v in state["model"].values())  # portable checkpoints


def test_the_optimizer_is_fused_on_cuda_and_steps_like_the_cpu_one() -> None:
    torch.manual_seed(0)
    cpu_params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(5))]
    cuda_params = [torch.nn.Parameter(p.detach().cuda()) for p in cpu_params]
    cfg = load_config(None, ["optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9"])
    cpu_opt = torch.optim.SGD(cpu_params, lr=0.1, momentum=0.9, weight_decay=cfg.optim.weight_decay,
                              nesterov=cfg.optim.nesterov)
    cuda_opt = builders.build_optimizer(cfg.optim, cuda_params, torch.device("cuda"))
    assert cuda_opt.defaults.get("fused") is True
    for _ in range(3):
        for params, opt in ((cpu_params, cpu_opt), (cuda_params, cuda_opt)):
            opt.zero_grad()
            sum((p * p).sum() for p in params).backward()
            opt.step()
    for a, b in zip(cpu_params, cuda_params):
        torch.testing.assert_close(a.detach(), b.detach().cpu(), rtol=1e-5, atol=1e-6)


def test_the_deferred_finite_check_is_the_cuda_default_and_stops_a_nan_run(tmp_path: Path) -> None:
    cfg = load_config(None, [*ON_CUDA, f"trainer.out_dir={tmp_path / 'nan'}"])
    assert builders.finite_check_mode(cfg, torch.device("cuda")) == "deferred"
    trainer = _trainer(tmp_path / "nan", "trainer.epochs=2", "trainer.log_every=3")
    calls = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == 8 else grad

    trainer.student.fc.weight.register_hook(poison)
    with pytest.raises(NonFiniteLossError, match="became NaN/Inf"):
        trainer.fit()


def test_pinned_copies_reach_the_gpu_unchanged(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "copies", "trainer.epochs=1")
    batch = next(iter(trainer.data.train.epoch(0)))
    assert all(v.is_cuda for v in batch.values() if isinstance(v, torch.Tensor))
    reference = next(iter(Trainer(load_config(None, [*TINY, f"trainer.out_dir={tmp_path / 'cpu'}",
                                                      "trainer.epochs=1"])).data.train.epoch(0)))
    torch.testing.assert_close(batch["target"].cpu(), reference["target"])


def test_an_interrupted_cuda_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # cuDNN's fastest kernels reduce in a varying order; the deterministic ones leave only the resume to test
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    _trainer(tmp_path / "full", "trainer.epochs=2").fit()
    assert not _trainer(tmp_path / "part", "trainer.epochs=2", "trainer.stop_after_steps=7").fit().completed
    assert _trainer(tmp_path / "part", "trainer.epochs=2").fit(resume="auto").completed
    a = load_checkpoint_file(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint_file(tmp_path / "part" / "checkpoints" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs after resume")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs two GPUs (one process per GPU)")
def test_nccl_ddp_trains_two_ranks(tmp_path: Path) -> None:
    from _helpers import explain, torchrun

    out, config = tmp_path / "ddp", tmp_path / "ddp.yaml"
    config.write_text("description: NCCL DDP check (tiny synthetic data)\n")
    proc = torchrun(["-m", "kdlab", "train", str(config), *ON_CUDA, "trainer.epochs=1", f"trainer.out_dir={out}"])
    assert proc.returncode == 0, explain(proc)
    assert (out / "final.json").exists()
