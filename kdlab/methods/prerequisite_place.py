"""Where a run a method needs first (SSKD's teacher head, FSP/AB/FT's initialisation stages) lives.

A prerequisite run trained from a teacher goes beside that teacher, so every method and seed
distilling from it finds the run again; a teacher folder that cannot be written (a shared,
read-only release) sends it to the user cache (``$KDLAB_CACHE_DIR`` or ``~/.cache/kdlab``).
"""

from __future__ import annotations

import os
from pathlib import Path

from kdlab.config import Config
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.data.cache import default_cache_dir


#: config keys that do not change what a prerequisite run learns (paths, speed, display), left out of
#: its digest: SSKD's head uses them as they are, FSP / AB / FT's initialisation stages extend them
NOT_HASHED = frozenset(
    {
        "description",
        "model.checkpoint",  # replaced by the digest of the file's bytes
        "trainer.out_dir",
        "trainer.device",
        "trainer.progress",
        "trainer.stop_after_steps",
        "trainer.time_limit",
        "data.root",
        "data.download",
        "data.cache_dir",
        "data.num_workers",
        "data.eval_batch_size",
        # where the numbers are shown, not what is learned
        "logging.tensorboard",
        "logging.csv",
        "logging.wandb.project",
        "logging.wandb.name",
        "logging.wandb.mode",
    }
)


def teacher_home(cfg: Config, checkpoint_file: str) -> Path:
    """The folder prerequisite runs go beside: the teacher's run folder, or its checkpoint file's folder."""
    given = cfg.teacher.checkpoint
    if given is not None and Path(given).is_dir():
        return Path(given)
    return Path(checkpoint_file).parent


def is_writable(path: Path) -> bool:
    """Whether ``path`` (or, when missing, its nearest existing ancestor) accepts new files.

    A folder without any write permission bit counts as read-only even for root, who could write
    there anyway: a shared teacher folder marked read-only must not collect prerequisite runs.
    """
    probe = Path(path).absolute()
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    if not probe.is_dir() or not probe.stat().st_mode & 0o222:
        return False
    return os.access(probe, os.W_OK | os.X_OK)


def prerequisite_run_dir(cfg: Config, folder: str, digest: str) -> Path:
    """The run folder of prerequisite ``folder/digest`` (finished, in progress, or to be run).

    Order: a finished run beside the teacher, a finished run in the user cache, an interrupted run
    in a writable place (resumed), else beside the teacher when that is writable, else the user cache.
    """
    _, checkpoint, _, _ = resolve_teacher_source(cfg)
    beside = teacher_home(cfg, checkpoint) / folder / digest
    cached = default_cache_dir() / folder / digest
    for place in (beside, cached):
        if (place / "final.json").exists():
            return place
    for place in (beside, cached):
        if (place / "checkpoints" / "last.pt").exists() and is_writable(place):
            return place
    return beside if is_writable(beside) else cached


__all__ = ["NOT_HASHED", "is_writable", "prerequisite_run_dir", "teacher_home"]
