"""The resumable state of a run: what a checkpoint holds, writing it, and restoring it.

A checkpoint is ``{model, method, optimizer, scaler, epoch, step, global_step,
epoch_sums, epoch_steps, epoch_seconds, best, rng, config, world_size,
kdlab_version}`` (+ ``rng_ranks`` under DDP). Restored, the run continues
bitwise-exactly: the data's randomness is a function of (seed, epoch, step),
the learning rate of the position, and the global RNG comes back per rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kdlab
from kdlab import collectives
from kdlab.config import ConfigError, flatten_config, to_dict
from kdlab.engine.checkpoint import (
    CheckpointError,
    atomic_copy,
    atomic_save,
    load_checkpoint_file,
    require_keys,
    rng_state,
    set_rng_state,
)
from kdlab.engine.progress import say

#: keys that may differ between a run and its resumption (they do not change the result)
OPERATIONAL_KEYS = {
    "trainer.stop_after_steps",
    "trainer.time_limit",
    "trainer.device",
    "trainer.progress",
    "trainer.out_dir",
    "trainer.epochs",
    "data.num_workers",
    "data.cache_dir",
    "data.eval_batch_size",
    "description",
    # where the numbers are shown, not what is learned: a resumed run may turn a backend on or off
    "logging.tensorboard",
    "logging.csv",
    "logging.wandb.project",
    "logging.wandb.name",
    "logging.wandb.mode",
}

RESUME_KEYS = ("model", "method", "optimizer", "epoch", "step", "rng", "config")


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = flatten_config(old), flatten_config(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in OPERATIONAL_KEYS)


def checkpoint_state(run: Any) -> dict[str, Any]:
    """Everything needed to continue ``run`` (a Trainer) from where it stands."""
    method_state = {k: v for k, v in run.method.state_dict().items() if not k.startswith("student.")}
    return {
        "model": run.student.state_dict(),
        "method": method_state,
        "optimizer": run.optimizer.state_dict(),
        "scaler": None,
        "epoch": run.epoch,
        "step": run.step_in_epoch,
        "global_step": run.global_step,
        "epoch_sums": dict(run._epoch_sums),
        "epoch_steps": run._epoch_steps,
        "epoch_seconds": run._epoch_seconds,
        "best": run.best,
        "rng": rng_state(),
        "config": to_dict(run.cfg),
        # the input and output a deployed student expects (kdlab export / profile read them)
        "data_facts": run.data.facts() if hasattr(run.data, "facts") else None,
        "world_size": run.dist.world_size,
        "kdlab_version": kdlab.__version__,
    }


def save_checkpoint(run: Any, name: str = "last.pt") -> Path:
    """Write ``run``'s checkpoint (rank 0; every rank must call it: it gathers their RNG states)."""
    rng_ranks = collectives.all_gather_objects(rng_state()) if run.dist.enabled else None
    path = run.ckpt_dir / name
    if run.dist.is_main:
        state = checkpoint_state(run)
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        atomic_save(state, path)
        keep = run.cfg.trainer.keep_last
        if keep > 1 and name == "last.pt" and run.step_in_epoch == 0:
            atomic_copy(path, run.ckpt_dir / f"epoch_{run.epoch:04d}.pt")
            for old in sorted(run.ckpt_dir.glob("epoch_*.pt"))[:-keep]:
                old.unlink(missing_ok=True)
    collectives.barrier()  # no rank runs ahead of (or reads) a checkpoint still being written
    return path


def restore_checkpoint(run: Any, where: str, force: bool = False) -> bool:
    """Load ``where`` (a checkpoint path, or ``auto``: last.pt of the run folder if any) into ``run``."""
    if where == "auto":
        path = run.ckpt_dir / "last.pt"
        if not path.exists():
            say(run.progress_mode, f"no checkpoint at {path}: starting fresh")
            return False
    else:
        path = Path(where)
        if not path.exists():
            raise CheckpointError(f"--resume {where}: no such checkpoint (refusing to start fresh)")
    state = load_checkpoint_file(path, unsafe=run.unsafe_load)
    require_keys(state, RESUME_KEYS, path)
    changed = config_differences(state["config"], to_dict(run.cfg))
    if changed and not force:
        raise ConfigError(
            f"--resume {path}: the config differs from the checkpoint's in {', '.join(changed)}; "
            "pass --resume-force to continue anyway"
        )
    run.student.load_state_dict(state["model"])
    missing, unexpected = run.method.load_state_dict(
        {**{f"student.{k}": v for k, v in state["model"].items()}, **state["method"]}, strict=False
    )
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not fit this method: missing {missing}, unexpected {unexpected}")
    run.optimizer.load_state_dict(state["optimizer"])
    run.epoch, run.step_in_epoch = int(state["epoch"]), int(state["step"])
    run.global_step = int(state.get("global_step", 0))
    run._epoch_sums = dict(state.get("epoch_sums", {}))
    run._epoch_steps = int(state.get("epoch_steps", 0))
    run._epoch_seconds = float(state.get("epoch_seconds", 0.0))
    run.best = state.get("best")
    rng_ranks = state.get("rng_ranks")
    same_layout = isinstance(rng_ranks, list) and len(rng_ranks) == run.dist.world_size
    set_rng_state(rng_ranks[run.dist.rank] if same_layout else state["rng"])
    if run.dist.is_main:
        run.metrics.truncate_after(run.epoch)
    say(run.progress_mode, f"resumed from {path} at epoch {run.epoch} step {run.step_in_epoch}")
    return True
