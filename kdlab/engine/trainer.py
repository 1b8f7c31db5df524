"""The one trainer: supervised training, distillation and label-free distillation alike.

What a method is does not matter here: the trainer asks a :class:`Distiller`
for a :class:`StepOutput`, backpropagates its weighted total, logs every term,
evaluates, checkpoints and resumes. Randomness of the data comes from
(seed, epoch, step) inside the data layer and the learning rate is a pure
function of the position, so a run stopped anywhere and resumed ends bitwise
equal to an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

import kdlab
from kdlab.checkpoint_io import atomic_write_text
from kdlab.config import Config, ConfigError, dump_yaml, load_config
from kdlab.engine import builders, distributed, preflight
from kdlab.engine.checkpoint import atomic_copy
from kdlab.engine.finite_guard import DeferredFiniteCheck, prepare_optimizer_for_skips
from kdlab.engine.loggers import RunLoggers
from kdlab.engine.metric_reduction import add_losses, agree, epoch_means, flush_into
from kdlab.engine.metrics_log import MetricsLog
from kdlab.engine.progress import EpochProgress, say
from kdlab.engine.run_state import (  # noqa: F401
    OPERATIONAL_KEYS,
    clear_run_outputs,
    config_differences,
    restore_checkpoint,
    run_outputs,
    save_checkpoint,
)
from kdlab.engine.schedule import learning_rate
from kdlab.engine.stop_signal import STOP_PREFIXES, StopSignal
from kdlab.engine.timelimit import parse_duration
from kdlab.tasks import EvalParts, get_task

EXIT_PREEMPTED = 3


def _now() -> float:
    """The trainer's clock (a function so tests can fake the passing of time)."""
    return time.monotonic()


class NonFiniteLossError(RuntimeError):
    """A loss term or a gradient became NaN/Inf; the last good checkpoint is kept (CLI exit code 4)."""


@dataclass
class TrainResult:
    out_dir: Path
    completed: bool  # False when stopped early (stop_after_steps, time limit, signal)
    exit_code: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: Optional[float] = None




class _LossGraphOnly(torch.nn.Module):
    """The Distiller with its logits detached in the output, for DDP.

    DDP (find_unused_parameters) marks as used every parameter reachable from the
    tensors a forward returns. The logits are returned for training accuracy only;
    when no term reads them (label-free methods) the classifier never gets a
    gradient, and DDP would wait for it forever. Detached, only the loss counts.
    """

    def __init__(self, method: torch.nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> Any:
        out = self.method(batch, **kwargs)
        if out.logits is not None:
            out.logits = out.logits.detach()
        return out


class Trainer:
    """Builds everything from a config and runs (or resumes) it."""

    def __init__(self, cfg: Config, *, unsafe_load: bool = False) -> None:
        self.cfg = builders.with_views(cfg)
        self.task = get_task(self.cfg.task)
        self.unsafe_load = unsafe_load
        self.out_dir = Path(self.cfg.trainer.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        if self.cfg.trainer.num_threads is not None:
            torch.set_num_threads(self.cfg.trainer.num_threads)
        self.dist, self.device = distributed.setup(self.cfg.trainer.device)
        # before anything is built: a logging backend asked for and not installed fails at once
        self.loggers = RunLoggers(self.cfg, self.out_dir, is_main=self.dist.is_main)
        # only rank 0 talks: progress lines, summaries and files are its job
        self.progress_mode = self.cfg.trainer.progress if self.dist.is_main else "none"
        self._build()

    # ------------------------------------------------------------------ setup
    def _run_prerequisites(self) -> None:
        from kdlab.methods.build import prerequisites

        for need in prerequisites(self.cfg):
            # rank 0's view decides, so every rank runs (or skips) the same nested run
            if distributed.all_gather_objects(Path(need.produces).exists())[0]:
                continue
            say(self.progress_mode, f"first: {need.description} -> {need.produces}")
            resume = "auto"  # continues an interrupted one; starts fresh in an empty folder
            result = Trainer(need.config, unsafe_load=self.unsafe_load).fit(resume=resume)
            if not result.completed:
                raise RuntimeError(f"{need.description} stopped early; run again with --resume auto")
            if not Path(need.produces).exists():
                raise RuntimeError(f"{need.description} finished but did not write {need.produces}")

    def _build(self) -> None:
        cfg, task = self.cfg, self.task
        self._run_prerequisites()
        torch.manual_seed(cfg.trainer.seed)
        with distributed.main_first():  # rank 0 fills any on-disk cache, the others then read it
            self.data = task.build_data(
                cfg,
                device=self.device,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                channels_last=builders.channels_last(cfg),
                progress=self.progress_mode != "none",
            )
        self.student, self.teacher = task.build_networks(cfg, self.data, unsafe_load=self.unsafe_load)
        memory_format = task.memory_format(cfg)
        self.student.to(self.device, memory_format=memory_format)
        if cfg.trainer.sync_batchnorm and self.dist.enabled and not cfg.model.frozen:
            # before the loss terms are built: they may hook into the student's modules
            self.student = distributed.convert_sync_batchnorm(self.student, self.device)
        if self.teacher is not None:
            self.teacher.to(self.device, memory_format=memory_format)
        # what type-checks but would only break at the first step is refused here, before any file is written
        self.method, self.data = preflight.build_checked_method(
            task, cfg, self.student, self.teacher, self.data, self.device,
            out_dir=self.out_dir, is_main=self.dist.is_main,
        )
        if cfg.trainer.compile:
            self.student.compile()
        # DDP wraps the Distiller (student + trainable term modules); the teacher is outside it
        self.model = distributed.wrap_ddp(_LossGraphOnly(self.method), self.device) if self.dist.enabled else self.method
        named = [(n, p) for n, p in self.method.named_parameters() if p.requires_grad]
        self.optimizer = builders.build_optimizer(cfg.optim, [p for _, p in named], self.device)
        self.finite_check: Optional[DeferredFiniteCheck] = None
        if builders.finite_check_mode(cfg, self.device) == "deferred":
            prepare_optimizer_for_skips(self.optimizer)
            self.finite_check = DeferredFiniteCheck(self.optimizer, named, self.device)
        self.autocast = builders.autocast_for(cfg, self.device)
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best: Optional[float] = None
        self._epoch_sums: dict[str, float] = {}
        self._epoch_steps = 0
        self._epoch_seconds = 0.0

    # ------------------------------------------------------------ checkpoints
    def save(self, name: str = "last.pt") -> Path:
        """Write a checkpoint (rank 0; every rank must call it: it gathers their RNG states)."""
        return save_checkpoint(self, name)

    def resume(self, where: str, force: bool = False) -> bool:
        """Load ``where`` (a checkpoint path, or ``auto``: last.pt of out_dir if any)."""
        return restore_checkpoint(self, where, force)

    # ------------------------------------------------------------------ steps
    def _nonfinite_error(self, out: Any, grad_norm: torch.Tensor) -> NonFiniteLossError:
        bad = [k for k, v in out.terms.items() if not bool(torch.isfinite(v).all())]
        if bad:
            what = f"loss term(s) {', '.join(bad)}"
        elif not bool(torch.isfinite(out.loss).all()):
            what = "the total loss"
        elif not bool(torch.isfinite(grad_norm).all()):
            names = [
                name for name, p in self.method.named_parameters()
                if p.grad is not None and not bool(torch.isfinite(p.grad).all())
            ]
            shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
            what = f"the gradient of {shown}" if names else "a gradient"
        else:
            what = "a loss or gradient on another rank"
        return NonFiniteLossError(
            f"{what} became NaN/Inf at epoch {self.epoch} step {self.step_in_epoch} (global step {self.global_step}); "
            f"stopped before the optimizer step; {self._last_good_checkpoint()}"
        )

    def _last_good_checkpoint(self) -> str:
        """Where a stopped run can be continued from, naming only files that exist."""
        last = self.ckpt_dir / "last.pt"
        if last.is_file():
            return f"last good checkpoint kept: {last} (lower optim.lr or fix the loss, then --resume auto)"
        return f"no checkpoint of this run exists yet (it diverged before the end of its first epoch): nothing to resume in {self.out_dir}"

    def _train_step(self, batch: dict[str, torch.Tensor], steps: int, stop: "StopSignal") -> tuple[Any, Optional[str]]:
        """One optimizer step; returns its output and the agreed reason to stop after it (or None)."""
        progress = self.epoch + self.step_in_epoch / steps
        lr = learning_rate(self.cfg.schedule, self.cfg.optim.lr, progress, self.cfg.trainer.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        context = self.autocast if self.autocast is not None else nullcontext()
        with context:
            out = self.model(batch, epoch=self.epoch, progress=progress)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms = torch._foreach_norm([p.grad for p in params]) if params else []  # one fused kernel, no host sync
        grad_norm = torch.linalg.vector_norm(torch.stack(norms)) if params else out.loss.new_zeros(())
        reason = self._stop_reason(stop, self._steps_this_process + 1)
        if self.finite_check is not None:
            # no host read: a bad step is skipped by the fused optimizer, reported at the next check
            self.finite_check.record(self.global_step, out.loss, out.terms, params, norms, grad_norm)
            self.optimizer.step()
            self._accumulate(out, batch)
            if (self.global_step + 1) % self.cfg.trainer.log_every == 0:
                self._raise_if_nonfinite()
                _, reason = self._agree(True, reason)
            elif self.dist.enabled and reason is not None and not reason.startswith("trainer.stop_after_steps"):
                reason = None  # signals and time limits are agreed between ranks at the next check
            return out, reason
        # One host sync per step (and under DDP one tiny collective): cheap next to a training
        # step on a CPU, and it refuses a bad step before it lands, on every rank at once.
        finite = bool(torch.isfinite(out.loss).item()) and bool(torch.isfinite(grad_norm).item())
        finite, reason = self._agree(finite, reason)
        if not finite:
            raise self._nonfinite_error(out, grad_norm)
        self.optimizer.step()
        self._accumulate(out, batch)
        return out, reason

    def _raise_if_nonfinite(self) -> None:
        """The deferred check's host read: raise if any step since the start was not finite."""
        if self.finite_check is None:
            return
        found = self.finite_check.report()
        if found is None:
            return
        first, what = found
        steps = self.data.train.steps_per_epoch
        raise NonFiniteLossError(
            f"{what} became NaN/Inf at epoch {first // steps} step {first % steps} (global step {first}); "
            f"that step was skipped and training stopped at global step {self.global_step + 1} "
            f"(trainer.finite_check=deferred checks every trainer.log_every={self.cfg.trainer.log_every} steps); "
            f"{self._last_good_checkpoint()}"
        )

    def _agree(self, finite: bool, reason: Optional[str]) -> tuple[bool, Optional[str]]:
        """Every rank takes the same decision: any non-finite rank stops all, the most urgent stop wins."""
        return agree(finite, reason, self.dist.world_size, self._reason_text)

    def _reason_text(self, index: int) -> str:
        prefix = STOP_PREFIXES[index]
        if prefix == "trainer.stop_after_steps":
            return f"trainer.stop_after_steps={self.cfg.trainer.stop_after_steps}"
        if prefix == "trainer.time_limit":
            return f"trainer.time_limit={self.cfg.trainer.time_limit}"
        return "signal received by another rank"

    def _accumulate(self, out: Any, batch: dict[str, torch.Tensor]) -> None:
        add_losses(self._pending, out)
        self.task.accumulate(self._pending, out, batch, self.method)

    def _flush_sums(self) -> None:
        """Move on-device running sums to Python floats (only at log/checkpoint points: no per-step sync)."""
        flush_into(self._pending, self._epoch_sums, self.dist.world_size if self.dist.enabled else 1)

    # ------------------------------------------------------------------- loop
    def fit(self, resume: Optional[str] = None, resume_force: bool = False, overwrite: bool = False) -> TrainResult:
        """Train (or continue with ``resume``: a checkpoint path or ``auto``).

        A run folder that already holds a run's outputs is never trained over silently: without
        ``resume`` it is refused, unless ``overwrite`` deletes those outputs first.
        """
        cfg = self.cfg
        distributed.set_gather_enabled(cfg.distill.gather)
        if overwrite and resume is not None:
            raise ConfigError("--overwrite starts the run over; it cannot be combined with --resume")
        if overwrite:
            if self.dist.is_main:
                clear_run_outputs(self.out_dir)
            distributed.barrier()
        elif resume is not None:
            self.resume(resume, force=resume_force)
        else:
            outputs = run_outputs(self.out_dir)
            if outputs:
                raise ConfigError(
                    f"{self.out_dir} already holds a run ({', '.join(outputs[:4])}"
                    f"{', ...' if len(outputs) > 4 else ''}): pass --resume auto to continue it, --overwrite to "
                    "start it over, or choose another trainer.out_dir"
                )
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "config.yaml", dump_yaml(cfg), what="the run's config.yaml")
        distributed.barrier()  # every rank has read any checkpoint before rank 0 writes again
        self._pending: dict[str, Any] = {}
        steps = self.data.train.steps_per_epoch
        if steps == 0:
            raise ConfigError(
                f"data.batch_size={cfg.data.batch_size} is larger than the {self.data.train_size} training samples"
            )
        self._limit = parse_duration(cfg.trainer.time_limit) if cfg.trainer.time_limit else None
        self._started = _now()
        self._steps_this_process = 0
        with StopSignal() as stop, self.loggers.start(self.global_step):
            while self.epoch < cfg.trainer.epochs:
                bar = EpochProgress(self.progress_mode, steps, self.step_in_epoch, f"epoch {self.epoch}")
                tick = _now()
                for batch in self.data.train.epoch(self.epoch, start_step=self.step_in_epoch):
                    out, reason = self._train_step(batch, steps, stop)
                    self.step_in_epoch += 1
                    self.global_step += 1
                    self._epoch_steps += 1
                    self._steps_this_process += 1
                    if self.global_step % cfg.trainer.log_every == 0:
                        lr = self.optimizer.param_groups[0]["lr"]
                        self.loggers.log_step(self.global_step, {"loss": out.loss, **out.terms, "lr": lr})
                        bar.update({"loss": f"{float(out.loss.detach()):.4f}"})
                    else:
                        bar.update()
                    if reason is not None and self.step_in_epoch < steps:
                        bar.close()
                        return self._stop_early(reason, tick)
                bar.close()
                self._epoch_seconds += _now() - tick
                self._raise_if_nonfinite()
                self._flush_sums()
                self._end_epoch(steps)
                _, reason = self._agree(True, self._stop_reason(stop, self._steps_this_process))
                if reason is not None and self.epoch < cfg.trainer.epochs:
                    return self._stop_early(reason, None)
        history = self.metrics.read() if self.dist.is_main else []
        if self.dist.is_main:
            summary = {
                "completed": True,
                "epochs": cfg.trainer.epochs,
                "best_metric": cfg.trainer.best_metric,
                "best": self.best,
                "final": history[-1] if history else {},
                "train_seconds": sum(row.get("seconds", 0.0) for row in history),
                "world_size": self.dist.world_size,
                "kdlab_version": kdlab.__version__,
            }
            atomic_write_text(self.out_dir / "final.json", json.dumps(summary, indent=2) + "\n",
                              what="the run's final.json")
        distributed.barrier()
        history = history or self.metrics.read()
        say(self.progress_mode, f"done: {self.out_dir} (best {cfg.trainer.best_metric} = {self.best})")
        return TrainResult(self.out_dir, True, 0, history, self.best)

    def _stop_reason(self, stop: StopSignal, steps_done: int) -> Optional[str]:
        """This rank's reason to stop once ``steps_done`` steps of this process are finished."""
        if stop.received is not None:
            return f"signal {signal.Signals(stop.received).name}"
        if self.cfg.trainer.stop_after_steps is not None and steps_done >= self.cfg.trainer.stop_after_steps:
            return f"trainer.stop_after_steps={self.cfg.trainer.stop_after_steps}"
        if self._limit is not None and self._time_is_up(self._started, self._limit):
            return f"trainer.time_limit={self.cfg.trainer.time_limit}"
        return None

    def _time_is_up(self, started: float, limit: float) -> bool:
        elapsed = _now() - started
        per_step = elapsed / max(self._steps_this_process, 1)
        # leave room for one more step plus a checkpoint write
        return elapsed + 2 * per_step + 30.0 > limit

    def _stop_early(self, reason: str, tick: Optional[float]) -> TrainResult:
        self._raise_if_nonfinite()  # never checkpoint after a skipped bad step
        if tick is not None:
            self._epoch_seconds += _now() - tick
        self._flush_sums()
        path = self.save()
        code = 0 if reason.startswith("trainer.stop_after_steps") else EXIT_PREEMPTED
        say(
            self.progress_mode,
            f"stopped by {reason} at epoch {self.epoch} step {self.step_in_epoch}; "
            f"checkpoint {path}; continue with --resume auto",
        )
        return TrainResult(self.out_dir, False, code, self.metrics.read(), self.best)

    def _end_epoch(self, steps: int) -> None:
        cfg = self.cfg
        row: dict[str, Any] = {"epoch": self.epoch}
        row.update(epoch_means(self._epoch_sums, self._epoch_steps))
        row.update(self.task.train_metrics(self._epoch_sums))
        last_epoch = self.epoch + 1 == cfg.trainer.epochs
        if last_epoch or (self.epoch + 1) % cfg.trainer.eval_every == 0:
            row.update(self.evaluate())
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = self._epoch_seconds
        row["steps"] = self.global_step
        preflight.check_best_metric_recorded(cfg, row)  # keys known only once evaluated, before best.pt
        if self.dist.is_main:
            self.metrics.append(row)
        self.loggers.log_epoch(row)
        say(self.progress_mode, self._summary(row))
        self.epoch += 1
        self.step_in_epoch = 0
        self._epoch_sums, self._epoch_steps, self._epoch_seconds = {}, 0, 0.0
        metric = row.get(cfg.trainer.best_metric)
        improved = isinstance(metric, (int, float)) and (self.best is None or metric > self.best)
        if improved:
            self.best = float(metric)  # type: ignore[arg-type]
        path = self.save()
        if self.dist.is_main and (improved or not (self.ckpt_dir / "best.pt").exists()):
            atomic_copy(path, self.ckpt_dir / "best.pt")

    def evaluate(self) -> dict[str, Any]:
        """The task's per-epoch evaluation of the student (every rank gets the whole split's result)."""
        parts = EvalParts(self.cfg, self.student, self.method, self.data, self.autocast, self.dist.enabled)
        return self.task.evaluate(parts)

    def _summary(self, row: dict[str, Any]) -> str:
        parts = [f"epoch {row['epoch'] + 1}/{self.cfg.trainer.epochs}", f"loss {row['train_loss']:.4f}"]
        for key in self.task.summary_keys:
            if row.get(key) is not None:
                parts.append(f"{key} {row[key]:.4f}" if key.startswith("val_map") else f"{key} {row[key]:.2f}")
        parts.append(f"lr {row['lr']:.4g}")
        parts.append(f"{row['seconds']:.1f}s")
        return "  ".join(parts)


def train(
    config: Optional[str | Path] = None,
    overrides: tuple[str, ...] | list[str] = (),
    *,
    resume: Optional[str] = None,
    resume_force: bool = False,
    unsafe_load: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Python entry point equal to ``kdlab train CONFIG [overrides] [--resume ...] [--overwrite]``."""
    cfg = load_config(config, overrides)
    return Trainer(cfg, unsafe_load=unsafe_load).fit(resume=resume, resume_force=resume_force, overwrite=overwrite)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
