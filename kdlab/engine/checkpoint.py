"""Training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a plain dict ``{model, method, optimizer, scaler, epoch, step,
global_step, rng, config, best, kdlab_version}``: ``model`` is the student's
state_dict (so any checkpoint is also a model file for ``create_model``),
``method`` the trainable extras of the loss terms, ``epoch``/``step`` the
position to continue from (epoch index in progress, optimizer steps already
done in it).
"""

from __future__ import annotations

from typing import Any

import torch

from kdlab.checkpoint_io import (  # noqa: F401 - re-exported: the engine's callers use them from here
    CheckpointError,
    PathLike,
    atomic_copy,
    atomic_save,
    file_sha256,
    load_checkpoint_file,
    require_keys,
)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
