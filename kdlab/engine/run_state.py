"""The resumable state of a run: what a checkpoint holds, writing it, and restoring it.

A checkpoint is ``{model, method, optimizer, scaler, epoch, step, global_step,
epoch_sums, epoch_steps, epoch_seconds, best, rng, config, world_size,
kdlab_version}`` (+ ``rng_ranks`` under DDP). Restored, the run continues
bitwise-exactly: the data's randomness is a function of (seed, epoch, step),
the learning rate of the position, and the global RNG comes back per rank.
"""

from __future__ import annotations

import logging

from pathlib import Path
from typing import Any, Optional

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


def run_outputs(out_dir: Path) -> list[str]:
    """What a run has left in ``out_dir`` (relative names): the summary, metrics, checkpoints and
    partial checkpoint writes. ``config.yaml`` alone does not count: it is written before the first step."""
    found = [name for name in ("final.json", "metrics.jsonl") if (out_dir / name).is_file()
             and (out_dir / name).stat().st_size > 0]
    checkpoints = out_dir / "checkpoints"
    if checkpoints.is_dir():
        found += sorted(f"checkpoints/{p.name}" for p in checkpoints.iterdir() if p.name.endswith((".pt", ".tmp")))
    return found


#: what ``--overwrite`` deletes before a run starts over (the files and folders a run writes)
RUN_FILES = ("final.json", "metrics.jsonl", "metrics.csv", "eval.json", "profile.json")
RUN_FOLDERS = ("checkpoints", "tensorboard")


def clear_run_outputs(out_dir: Path) -> None:
    """Delete what an earlier run left in ``out_dir`` (``--overwrite``); other files stay."""
    import shutil

    for name in RUN_FILES:
        path = out_dir / name
        if path.is_symlink() or path.is_file():  # never a device, pipe or socket that carries a run file's name
            path.unlink()
    for name in RUN_FOLDERS:
        path = out_dir / name
        if path.is_symlink():
            path.unlink()  # the link, not what it points to
        elif path.is_dir():
            shutil.rmtree(path)


def _kept_checkpoints(ckpt_dir: Path) -> list[Path]:
    """The checkpoints ``--resume auto`` may continue from, newest first: last.pt, then trainer.keep_last's."""
    kept = sorted(ckpt_dir.glob("epoch_*.pt"), reverse=True)
    return [ckpt_dir / "last.pt", *kept]


def _loadable_resume_state(run: Any) -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """``--resume auto``: the newest checkpoint of the run that loads with what resuming needs.

    A damaged ``last.pt`` (a kill during a write on a file system without atomic rename, a disk
    error) falls back to the newest ``epoch_*.pt`` kept by ``trainer.keep_last``, said on the
    console; nothing is deleted or overwritten here. No checkpoint at all, with other outputs of
    a run present, is an error: starting fresh would write over them.
    """
    errors = []
    for candidate in _kept_checkpoints(run.ckpt_dir):
        if not candidate.is_file():
            continue
        try:
            state = load_checkpoint_file(candidate, unsafe=run.unsafe_load)
            require_keys(state, RESUME_KEYS, candidate)
        except CheckpointError as err:
            errors.append(f"{candidate.name}: {err}")
            continue
        if errors:
            message = f"--resume auto: {'; '.join(errors)}; continuing from {candidate} instead"
            say(run.progress_mode, message)
            logging.getLogger("kdlab.engine").warning(message)
        return candidate, state
    outputs = [name for name in run_outputs(run.out_dir) if not name.endswith(".tmp")]
    if errors:
        raise CheckpointError(
            f"--resume auto: no loadable checkpoint in {run.ckpt_dir} ({'; '.join(errors)}); refusing to start "
            "fresh over this run: pass --overwrite to start it over, or choose another trainer.out_dir"
        )
    if outputs:
        raise CheckpointError(
            f"--resume auto: {run.out_dir} holds a run's outputs ({', '.join(outputs)}) but no checkpoint to "
            "continue from; pass --overwrite to start it over, or choose another trainer.out_dir"
        )
    return None, None


def restore_checkpoint(run: Any, where: str, force: bool = False) -> bool:
    """Load ``where`` (a checkpoint path, or ``auto``: the run folder's newest loadable checkpoint) into ``run``."""
    if where == "auto":
        path, state = _loadable_resume_state(run)
        if path is None or state is None:
            say(run.progress_mode, f"no checkpoint in {run.ckpt_dir}: starting fresh")
            return False
    else:
        path = Path(where)
        if path.is_dir():
            raise CheckpointError(f"--resume {where}: a folder, not a checkpoint file (for a run folder's "
                                  "own checkpoint use --resume auto with trainer.out_dir set to it)")
        if not path.exists():
            raise CheckpointError(f"--resume {where}: no such checkpoint (refusing to start fresh)")
        state = load_checkpoint_file(path, unsafe=run.unsafe_load)
        require_keys(state, RESUME_KEYS, path)
    changed = config_differences(state["config"], to_dict(run.cfg)) if isinstance(state["config"], dict) else ["config"]
    if changed and not force:
        raise ConfigError(
            f"--resume {path}: the config differs from the checkpoint's in {', '.join(changed)}; "
            "pass --resume-force to continue anyway"
        )
    try:
        _load_run_state(run, state, path)
    except CheckpointError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        # --resume-force past a config change can meet weights of another architecture or a damaged state
        detail = " ".join(str(err).split())
        if len(detail) > 300:
            detail = detail[:300] + " ..."
        raise CheckpointError(f"--resume {path}: the checkpoint does not fit this run ({type(err).__name__}: "
                              f"{detail})") from None
    if run.dist.is_main:
        run.metrics.truncate_after(run.epoch)
    say(run.progress_mode, f"resumed from {path} at epoch {run.epoch} step {run.step_in_epoch}")
    return True


def _load_run_state(run: Any, state: dict[str, Any], path: Path) -> None:
    """Weights, optimizer, counters and RNG streams of ``state`` into ``run``."""
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
