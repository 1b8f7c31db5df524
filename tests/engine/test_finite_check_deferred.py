"""trainer.finite_check=deferred: bad steps are skipped on the device, reported at the next check, no per-step sync."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from kdlab.config import load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.finite_guard import DeferredFiniteCheck, prepare_optimizer_for_skips
from kdlab.engine.trainer import NonFiniteLossError, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from _fault_helpers import TINY  # noqa: E402


def _trainer(out: Path, *overrides: str) -> Trainer:
    return Trainer(load_config(None, [*TINY, f"trainer.out_dir={out}", *overrides]))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_a_flagged_step_changes_neither_weights_nor_optimizer_state(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(net.state_dict())
    make = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=5e-4, fused=True),
    }[name]
    opt, reference = make(list(net.parameters())), make(list(fresh.parameters()))
    prepare_optimizer_for_skips(opt)
    check = DeferredFiniteCheck(opt, list(net.named_parameters()), torch.device("cpu"))
    before = {k: v.clone() for k, v in net.state_dict().items()}

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, poison: bool, watch: bool) -> None:
        optimizer.zero_grad()
        loss = model(torch.ones(4, 3)).pow(2).mean() * (float("nan") if poison else 1.0)
        loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        norms = torch._foreach_norm([p.grad for p in params])
        if watch:
            check.record(0, loss, {"mse": loss}, params, norms, torch.linalg.vector_norm(torch.stack(norms)))
        optimizer.step()

    step(net, opt, poison=True, watch=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    step(net, opt, poison=False, watch=True)  # the first real step: as if the bad one never happened
    step(fresh, reference, poison=False, watch=False)
    for a, b in zip(net.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    first, what = check.report()
    assert first == 0 and what == "loss term(s) mse"


def test_deferred_run_equals_the_stepwise_run_bitwise(tmp_path: Path) -> None:
    a = _trainer(tmp_path / "step", "trainer.epochs=2", "trainer.finite_check=step")
    b = _trainer(tmp_path / "deferred", "trainer.epochs=2", "trainer.finite_check=deferred", "trainer.log_every=4")
    assert a.finite_check is None and b.finite_check is not None
    a.fit()
    b.fit()
    wa = load_checkpoint_file(tmp_path / "step" / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint_file(tmp_path / "deferred" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_nan_is_reported_at_the_next_check_and_no_checkpoint_follows_it(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "nan", "trainer.epochs=2", "trainer.finite_check=deferred", "trainer.log_every=3")
    calls = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == 8 else grad  # global step 7 = epoch 1 step 1 (6 per epoch)

    trainer.student.fc.weight.register_hook(poison)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert "gradient of student.fc.weight became NaN/Inf at epoch 1 step 1 (global step 7)" in message
    assert "stopped at global step 9" in message  # the check after global step 8 (log_every 3)
    ckpt = load_checkpoint_file(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)
    assert all(torch.isfinite(v.float()).all() for v in trainer.student.state_dict().values())


def test_no_host_read_between_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer(tmp_path / "sync", "trainer.finite_check=deferred", "trainer.log_every=1000")
    trainer._pending, trainer._steps_this_process, trainer._limit = {}, 0, None
    batches = trainer.data.train.epoch(0)
    first = next(batches)

    class _NoSignal:
        received = None

    trainer._train_step(first, trainer.data.train.steps_per_epoch, _NoSignal())  # warm-up (lazy builds)
    reads = {"n": 0}
    for method in ("item", "__bool__", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, **kwargs):
            reads["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    for _ in range(3):
        trainer._train_step(next(batches), trainer.data.train.steps_per_epoch, _NoSignal())
        trainer.global_step += 1
    monkeypatch.undo()
    assert reads["n"] == 0
