"""The initialisation stage of FSP, AB and FT: an ordinary kdlab run the trainer finishes first.

RepDistiller's ``helper/pretrain.py`` (``init``) trains, before the main
training, for ``init_epochs`` (default 30) with SGD at the main run's learning
rate (constant), momentum and weight decay:

- FSP and AB (*student stages*): the student (AB: also its connectors) on the
  FSP / AB loss alone against the frozen teacher. Here that is a run with the
  main run's student, seed, data and teacher and one loss term (``fsp_init`` /
  ``ab_init``); the main run's term then loads its student weights, so the main
  training starts from them.
- FT (*teacher stage*): the paraphraser, on reconstructing the frozen teacher's
  deepest feature map (MSE). Here that is a run whose model is the teacher with
  ``model.frozen: true`` (as SSKD's teacher head) and one term ``ft_init``, at a
  fixed seed, so every student seed of one teacher shares it.

Each run folder is keyed by a digest of the teacher file's bytes and of every
config value that shapes that run (for FSP / AB the student architecture and
seed, the data, the init settings; never paths, devices or display), and lives
beside the teacher as SSKD's head does::

    <teacher run folder, or the checkpoint file's folder>/<fsp_init|ab_init|ft_init>/<digest>/

or, where that is read-only, in the user cache (``$KDLAB_CACHE_DIR`` or
``~/.cache/kdlab``). A finished run (``final.json``) is reused by every later run
with the same digest, an interrupted one resumed; a resumed main run finds it
finished and goes straight on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from kdlab.checkpoint_io import file_sha256, load_checkpoint_file
from kdlab.config import Config, ConfigError, flatten_config, from_dict, to_dict
from kdlab.config.teacher_source import resolve_teacher_source
from kdlab.methods.base import Prerequisite
from kdlab.methods.prerequisite_place import NOT_HASHED, prerequisite_run_dir

#: bump when an initialisation recipe changes in a way its config does not show
RECIPE_VERSION = 1
#: RepDistiller's ``--init_epochs``
DEFAULT_INIT_EPOCHS = 30
INIT_LOG_EVERY = 50
#: the teacher stage (FT's paraphraser) always uses this seed: it depends on the teacher, data and settings only
TEACHER_STAGE_SEED = 0
#: RepDistiller's FT initialisation runs at lr 0.01 for these students (``helper/pretrain.py``), else at the
#: main learning rate
FT_SMALL_LR = 0.01
FT_SMALL_LR_STUDENTS = frozenset({
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
})

#: keys that do not change what an initialisation run trains (paths, speed, display), left out of its digest
_NOT_HASHED = NOT_HASHED | {
    "teacher.checkpoint",  # FSP / AB: the teacher file, hashed by its bytes (model.checkpoint likewise)
    "trainer.num_threads",
}


@dataclass(frozen=True)
class InitSettings:
    """``init_epochs`` and ``init_lr`` of an FSP / AB / FT term (``lr`` None: RepDistiller's choice)."""

    epochs: int = DEFAULT_INIT_EPOCHS
    lr: Optional[float] = None

    @classmethod
    def from_params(cls, epochs: Any = DEFAULT_INIT_EPOCHS, lr: Any = None) -> "InitSettings":
        """Validated settings; a bad value raises ValueError naming the parameter."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"init_epochs={epochs!r} must be an integer >= 1")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
            raise ValueError(f"init_lr={lr!r} must be a number > 0, or null for RepDistiller's choice")
        return cls(epochs=epochs, lr=None if lr is None else float(lr))


def checked(term: str, make: Any) -> Any:
    """``make()``, with a ValueError turned into a ConfigError naming the term (prerequisites run before build)."""
    try:
        return make()
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"distill.terms ({term}): {err}") from None


def configured_weight(config: Any, name: str) -> Optional[float]:
    """The weight of the one ``distill.terms`` entry named ``name``, or None when that cannot be told.

    A term's constructor is not given its weight; FSP and AB read it here so that weight 0 (the recipes:
    RepDistiller's main stage has no FSP / AB loss) skips their features and the teacher entirely.
    """
    if config is None:
        return None
    entries = [t for t in config.distill.terms if isinstance(t, dict) and t.get("name") == name]
    if len(entries) != 1:
        return None
    weight = entries[0].get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        return None
    return float(weight)


def _no_label_noise(data: dict[str, Any]) -> dict[str, Any]:
    # the initialisation losses read no labels: without the noise, every noise rate shares one run
    return dict(data, label_noise={"rate": None, "seed": None})


def _trainer(source: dict[str, Any], epochs: int, out_dir: str, seed: int) -> dict[str, Any]:
    trainer = source["trainer"]
    return {
        "epochs": epochs,
        "out_dir": out_dir,
        "seed": seed,
        "device": trainer["device"],
        "precision": trainer["precision"],
        "channels_last": trainer["channels_last"],
        "progress": trainer["progress"],
        "num_threads": trainer["num_threads"],
        "sync_batchnorm": trainer["sync_batchnorm"],
        "log_every": INIT_LOG_EVERY,
        "eval_every": epochs,  # one evaluation, at the end: the stage's accuracy means nothing
    }


def _optim(cfg: Config, lr: float) -> dict[str, Any]:
    # RepDistiller's init optimizer: plain SGD at a constant rate, the main run's momentum and weight decay
    return {"name": "sgd", "lr": lr, "momentum": cfg.optim.momentum, "weight_decay": cfg.optim.weight_decay,
            "nesterov": False}


def student_stage_config(
    cfg: Config, term: dict[str, Any], lr: float, epochs: int, out_dir: str, description: str,
    teacher_overrides: Optional[dict[str, Any]] = None,
) -> Config:
    """FSP / AB: the main run's student, seed, data and teacher, trained on ``term`` alone."""
    name, checkpoint, kwargs, classes = resolve_teacher_source(cfg)
    source = to_dict(cfg)
    model = dict(source["model"])
    if model["checkpoint"] is not None:
        model["checkpoint"] = str(Path(model["checkpoint"]).resolve())
    teacher = dict(
        source["teacher"], name=name, checkpoint=str(Path(checkpoint).resolve()), kwargs=kwargs, num_classes=classes,
        **(teacher_overrides or {}),
    )
    derived = {
        "description": description,
        "task": cfg.task,
        "trainer": _trainer(source, epochs, out_dir, cfg.trainer.seed),
        "optim": _optim(cfg, lr),
        "schedule": {"name": "constant"},
        "data": _no_label_noise(source["data"]),
        "model": model,
        "teacher": teacher,
        "distill": {"terms": [term], "labels": True},
        "logging": source["logging"],
    }
    return from_dict(derived)


def teacher_stage_config(
    cfg: Config, term: dict[str, Any], lr: float, epochs: int, out_dir: str, description: str
) -> Config:
    """FT: the frozen teacher as the model, only ``term``'s modules train (SSKD phase 1's layout)."""
    name, checkpoint, kwargs, classes = resolve_teacher_source(cfg)
    source = to_dict(cfg)
    data = _no_label_noise(source["data"])
    if cfg.teacher.mean is not None or cfg.teacher.std is not None:
        # fed by the data pipeline directly, the teacher sees the statistics it was trained with
        data.update(mean=cfg.teacher.mean, std=cfg.teacher.std)
    derived = {
        "description": description,
        "task": cfg.task,
        "trainer": _trainer(source, epochs, out_dir, TEACHER_STAGE_SEED),
        "optim": _optim(cfg, lr),
        "schedule": {"name": "constant"},
        "data": data,
        "model": {"name": name, "num_classes": classes, "checkpoint": str(Path(checkpoint).resolve()),
                  "kwargs": kwargs, "frozen": True},
        "distill": {"terms": [term], "labels": True},
        "logging": source["logging"],
    }
    return from_dict(derived)


def _file_identity(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    return file_sha256(path) if Path(path).is_file() else str(path)


def stage_digest(derived: Config) -> str:
    """12 hex digits: the recipe version, the weight files' bytes and every hashed key of ``derived``."""
    payload = {
        "recipe_version": RECIPE_VERSION,
        "model_file": _file_identity(derived.model.checkpoint),
        "teacher_file": _file_identity(derived.teacher.checkpoint),
        "config": {k: v for k, v in flatten_config(to_dict(derived)).items() if k not in _NOT_HASHED},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stage_run_dir(cfg: Config, folder: str, digest: str) -> Path:
    """Where a stage lives: beside the teacher, else in the user cache (SSKD's head order, see
    :func:`kdlab.methods.prerequisite_place.prerequisite_run_dir`)."""
    return prerequisite_run_dir(cfg, folder, digest)


@dataclass(frozen=True)
class InitStage:
    """One initialisation run: its term, folder and config."""

    term: str  # the stage's loss term (and key): fsp_init, ab_init, ft_init
    run_dir: Path
    config: Config
    description: str

    def prerequisite(self) -> Prerequisite:
        return Prerequisite(description=self.description, config=self.config, produces=self.run_dir / "final.json")

    def checkpoint(self, who: str) -> Path:
        """The finished run's ``last.pt``, or a ValueError saying that the stage has not run."""
        if not (self.run_dir / "final.json").exists():
            raise ValueError(
                f"{who}: its initialisation stage has not run yet ({self.run_dir / 'final.json'} is missing); "
                "`kdlab train` runs it first"
            )
        return self.run_dir / "checkpoints" / "last.pt"

    def tables(self, who: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The finished run's (student state_dict, term modules' state_dict)."""
        state = load_checkpoint_file(self.checkpoint(who))
        return state["model"], state["method"]

    def module_state(self, who: str, module: str) -> dict[str, torch.Tensor]:
        """The state_dict of the stage term's submodule ``module`` (e.g. ``paraphraser``)."""
        prefix = f"terms.{self.term}.{module}."
        return {k[len(prefix):]: v for k, v in self.tables(who)[1].items() if k.startswith(prefix)}


def make_stage(cfg: Config, term: dict[str, Any], lr: float, epochs: int, description: str,
               teacher_side: bool, teacher_overrides: Optional[dict[str, Any]] = None) -> InitStage:
    """The :class:`InitStage` of ``term`` derived from the main run's ``cfg``."""
    def derive(out_dir: str) -> Config:
        if teacher_side:
            return teacher_stage_config(cfg, term, lr, epochs, out_dir, description)
        return student_stage_config(cfg, term, lr, epochs, out_dir, description, teacher_overrides)

    run_dir = stage_run_dir(cfg, term["name"], stage_digest(derive("-")))
    return InitStage(term=term["name"], run_dir=run_dir, config=derive(str(run_dir)), description=description)


def epochs_text(epochs: int) -> str:
    return f"{epochs} epoch" + ("s" if epochs != 1 else "")
