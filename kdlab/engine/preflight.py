"""What only the built run can check, refused before the first step and before the run folder is written.

The config layer checks each value alone (types, bounds, spellings). Some values type-check and
still only break at the first training step, because they disagree with something known only once
the data and the networks exist. Each check here compares two sides and raises a
:class:`~kdlab.config.ConfigError` naming the config key(s) and both sides (the CLI prints it as one
line and exits 2):

- the run folder (``trainer.out_dir``): a folder, or creatable, and writable;
- the student's classifier width against the data's class count (labelled classification only: a
  label-free run evaluates by kNN on the embedding, a detector is checked by its task);
- each network's first convolution against the data's channel count (``model.kwargs.in_chans``,
  ``teacher.kwargs.in_chans``; a ``tv:`` network takes RGB only);
- a student that only takes one resolution (a timm ViT's ``img_size``) against ``data.image_size``
  (a frozen teacher resizes its input itself);
- something left to train (``model.frozen=true`` with loss terms that own no parameters);
- ``trainer.best_metric`` against the keys this run's ``metrics.jsonl`` rows will hold.

Some metric keys are only known once an evaluation ran (a loss term's own evaluation metrics,
``val_<term>_<name>``, and the parts of a term returning several values, ``train_<term>/<part>``): a
``trainer.best_metric`` under one of those prefixes is accepted here and checked against the first
evaluated row by :func:`check_best_metric_recorded`, before ``best.pt`` is written.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from kdlab import collectives
from kdlab.config import ConfigError

#: keys every metrics.jsonl row holds, whatever the task (bookkeeping, not measurements)
ROW_KEYS = ("epoch", "lr", "seconds", "steps", "train_loss")


@dataclass(frozen=True)
class MetricKeys:
    """The keys of a run's ``metrics.jsonl`` rows, as far as they are known before the first step.

    ``evaluated``: written by each evaluation (``val_*``); ``recorded``: written every epoch
    (``epoch``, ``train_loss``, ``train_<term>``, ...); ``open_prefixes``: keys starting with these
    may appear too, but which ones is only known once a step or an evaluation ran.
    """

    evaluated: tuple[str, ...]
    recorded: tuple[str, ...]
    open_prefixes: tuple[str, ...]

    def admits(self, key: str) -> bool:
        """Whether ``key`` is, or may turn out to be, one of the run's metric keys."""
        return key in self.evaluated or key in self.recorded or key.startswith(self.open_prefixes)


# ------------------------------------------------------------------------------------------ run folder


def out_dir_problem(out_dir: Path) -> Optional[str]:
    """Why ``out_dir`` cannot be this run's folder, or None when it can.

    An existing path must be a writable folder. A missing one must be creatable: its nearest
    existing ancestor must be a folder in which a directory can be made; that is tried (a temporary
    directory made and removed at once, next to where the run folder would go, never inside it),
    since permission bits alone do not tell (root, read-only mounts, /proc).
    """
    shown = f"trainer.out_dir={out_dir}"
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            return f"{shown} is {_kind_of(out_dir)}, not a folder: choose a folder for the run's files"
        if not os.access(out_dir, os.W_OK | os.X_OK):
            return f"{shown} is a folder this process cannot write to"
        return None
    ancestor = out_dir.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{shown} cannot be created: {ancestor} is {_kind_of(ancestor)}, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kdlab-write-check-", dir=ancestor))
    except OSError as err:
        return f"{shown} cannot be created in {ancestor}: {err.strerror or err}"
    return None


def _kind_of(path: Path) -> str:
    """'a file', 'a character device', ... for an existing non-folder ``path``."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken link"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a folder"


def check_out_dir(out_dir: Path, *, is_main: bool) -> None:
    """Raise unless rank 0 can use ``out_dir``; under DDP every rank raises alike (only rank 0 writes)."""
    problem = out_dir_problem(out_dir) if is_main else None
    problem = collectives.all_gather_objects(problem)[0]
    if problem is not None:
        raise ConfigError(problem)


# -------------------------------------------------------------------------------------------- networks


def first_conv(model: nn.Module) -> Optional[tuple[str, nn.Module]]:
    """(qualified name, module) of the first convolution registered in ``model``, or None without one.

    Every network kdlab builds (the zoo, ``tv:``, ``timm:`` and a ViT's patch embedding) registers
    its input convolution (stem) before any other, so this is the layer the images meet first.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return name, module
    return None


def input_channels(model: nn.Module) -> Optional[int]:
    """Channels the network's first convolution takes (None when it has no convolution)."""
    found = first_conv(model)
    return None if found is None else int(found[1].in_channels)


def check_classifier_width(cfg: Any, data: Any, student: nn.Module) -> None:
    """A labelled classification run's student needs one output per class of the data.

    A teacher's class count is compared with the student's where logits meet (the loss terms'
    build checks it): with the student equal to the data, a teacher of other classes is named there.
    A frozen student (``model.frozen``) may have more outputs than the data has classes: it is not
    trained, and a narrower one would fail its evaluation (targets beyond its outputs).
    """
    if cfg.task != "classification" or not cfg.distill.labels:
        return
    width = getattr(student, "num_classes", None)
    if not isinstance(width, int) or width == data.num_classes:
        return
    if cfg.model.frozen and width > data.num_classes:
        return  # a frozen network (FT's, SSKD's teacher stage) is not trained, and its evaluation finds every class
    raise ConfigError(
        f"model.num_classes={width} but the data ({cfg.data.name}) has {data.num_classes} classes: the student's "
        "classifier needs one output per class (leave model.num_classes unset to take the data's)"
    )


def _channel_mismatch(network: nn.Module, in_chans: int) -> Optional[tuple[str, int]]:
    """(first convolution's name, its input channels) when they differ from ``in_chans``, else None."""
    found = first_conv(network)
    if found is None or int(found[1].in_channels) == int(in_chans):
        return None
    name, conv = found
    return name or type(conv).__name__, int(conv.in_channels)


def _student_channels_key(cfg: Any) -> str:
    """The config key that set the student's input channels."""
    if "in_chans" in cfg.model.kwargs:
        return f"model.kwargs.in_chans={cfg.model.kwargs['in_chans']}"
    if cfg.model.name.startswith("tv:"):
        return f"model.name={cfg.model.name} (torchvision networks take RGB only; zoo and timm: networks take in_chans)"
    return f"model.name={cfg.model.name}"


def _teacher_channels_key(cfg: Any, key: Optional[str]) -> str:
    """The config key that set a teacher's input channels (``teacher.*`` or ``teachers.<key>``)."""
    from kdlab.config.teacher_source import resolve_teacher_source, single_teacher_view

    section = "teacher" if key is None else f"teachers.{key}"
    settings = cfg.teacher if key is None else cfg.teachers[key]
    name, _, kwargs, _ = resolve_teacher_source(cfg if key is None else single_teacher_view(cfg, key))
    if "in_chans" in settings.kwargs:
        return f"{section}.kwargs.in_chans={settings.kwargs['in_chans']}"
    if "in_chans" in kwargs:  # from the teacher's run folder or checkpoint
        return f"{section}.checkpoint={settings.checkpoint} (a {name} trained with in_chans={kwargs['in_chans']})"
    if name.startswith("tv:"):
        return f"{section}.name={name} (torchvision networks take RGB only)"
    return f"{section}.name={name}" if settings.name else f"{section}.checkpoint={settings.checkpoint} (a {name})"


def _teacher_members(teacher: nn.Module) -> list[tuple[Optional[str], nn.Module]]:
    """(``teachers`` key, or None for ``teacher.*``; network) of a FrozenTeacher or a TeacherSet."""
    if hasattr(teacher, "names") and callable(getattr(teacher, "items", None)):
        return list(teacher.items())
    return [(None, teacher)]


def check_input_channels(cfg: Any, data: Any, student: nn.Module, teacher: Optional[nn.Module]) -> None:
    """Each network's first convolution must take the data's channels (classification; detectors take RGB).

    The batch reaches the student and the teacher as the data gives it: nothing adds or drops channels.
    """
    if cfg.task != "classification":
        return
    sides = [("student", _student_channels_key, student)]
    for key, member in _teacher_members(teacher) if teacher is not None else []:
        sides.append(("teacher" if key is None else f"teacher {key}",
                      lambda cfg, key=key: _teacher_channels_key(cfg, key), member))
    for who, key_of, network in sides:
        mismatch = _channel_mismatch(network, data.in_chans)
        if mismatch is not None:
            conv, channels = mismatch
            raise ConfigError(
                f"{key_of(cfg)} but the data ({cfg.data.name}) has {data.in_chans}-channel images: the {who}'s "
                f"first convolution ({conv}) takes {channels} channel{'' if channels == 1 else 's'}"
            )


def check_input_size(cfg: Any, data: Any, student: nn.Module) -> None:
    """A student that only takes one resolution must be built for the data's.

    A frozen student or teacher (:class:`~kdlab.engine.teacher.FrozenTeacher`) resizes its input to
    the size it needs, so only a trained student is checked.
    """
    from kdlab.engine.teacher import FrozenTeacher
    from kdlab.models.input_size import required_input_size

    if cfg.task != "classification" or isinstance(student, FrozenTeacher):
        return
    required = required_input_size(student)
    size = int(data.image_size)
    if required is None or tuple(required) == (size, size):
        return
    height, width = required
    given = f"data.image_size={cfg.data.image_size}" if cfg.data.image_size is not None else "data.image_size unset"
    raise ConfigError(
        f"the student {cfg.model.name} only takes {height}x{width} images but the data's are {size}x{size} "
        f"({given}): build it for the data (model.kwargs.img_size={size}) or set data.image_size={height}"
    )


def check_networks(cfg: Any, data: Any, student: nn.Module, teacher: Optional[nn.Module]) -> None:
    """The checks that need only the data and the built networks (run before the loss terms are built:
    feature terms probe the networks with the data's shape)."""
    check_classifier_width(cfg, data, student)
    check_input_channels(cfg, data, student, teacher)
    check_input_size(cfg, data, student)


# ---------------------------------------------------------------------------------------------- method


def check_something_to_train(cfg: Any, method: nn.Module, student: nn.Module) -> None:
    """The optimizer needs at least one parameter that requires a gradient."""
    if any(p.requires_grad for p in method.parameters()):
        return
    count = sum(p.numel() for p in student.parameters())
    terms = ", ".join(getattr(method, "terms", {}).keys()) or "none"
    if cfg.model.frozen:
        raise ConfigError(
            f"nothing to train: model.frozen=true freezes all {count:,} parameters of the student and the loss "
            f"terms ({terms}) have none of their own: add a term with a trainable head or set model.frozen=false"
        )
    raise ConfigError(f"nothing to train: no parameter of the student ({count:,}) or of the loss terms ({terms}) "
                      "requires a gradient")


def metric_keys(cfg: Any, method: nn.Module) -> MetricKeys:
    """The ``metrics.jsonl`` keys of this run, from its task, labels and loss terms (no evaluation run).

    Mirrors what the trainer writes per epoch: :data:`ROW_KEYS`, ``train_<term>`` per loss term (and
    ``train_<term>/<part>`` for terms returning several values), ``train_top1`` when a labelled
    classifier trains; then the task's evaluation: ``val_top1``/``val_top5``/``val_loss`` (and a term's
    own ``val_<term>_<name>``), ``val_knn<k>``/``val_top1`` for label-free runs, ``val_map...``
    for detection.
    """
    terms = dict(getattr(method, "terms", {}) or {})
    recorded = list(ROW_KEYS) + [f"train_{key}" for key in terms]
    open_prefixes = [f"train_{key}/" for key in terms]
    if cfg.task == "detection":
        from kdlab.eval.detection import METRIC_KEYS

        evaluated = [f"val_{key}" for key in METRIC_KEYS]
    elif getattr(method, "labels", True):
        recorded.append("train_top1")
        evaluated = ["val_top1", "val_top5", "val_loss"]
        from kdlab.methods.base import LossTerm

        open_prefixes += [
            f"val_{key}_" for key, term in terms.items()
            if getattr(type(term), "evaluate", LossTerm.evaluate) is not LossTerm.evaluate
        ]
    else:
        k = cfg.eval.knn_k[0] if cfg.eval.knn_k else 20
        evaluated = [f"val_knn{k}", "val_top1"]
    return MetricKeys(tuple(evaluated), tuple(recorded), tuple(open_prefixes))


def check_best_metric(cfg: Any, method: nn.Module) -> None:
    """``trainer.best_metric`` must be a key this run's rows hold (or may hold: see :class:`MetricKeys`)."""
    keys = metric_keys(cfg, method)
    best = cfg.trainer.best_metric
    if keys.admits(best):
        return
    maybe = f"; keys starting with {', '.join(keys.open_prefixes)} once measured" if keys.open_prefixes else ""
    raise ConfigError(
        f"trainer.best_metric={best} is not a metric of this run: its evaluation writes "
        f"{', '.join(keys.evaluated)} (every epoch also records {', '.join(keys.recorded)}{maybe})"
    )


def check_best_metric_recorded(cfg: Any, row: dict[str, Any]) -> None:
    """After an evaluation, before ``best.pt`` is chosen: ``trainer.best_metric`` must be in the row.

    Only rows of an evaluation (holding some ``val_*`` key) are checked: an epoch without one
    legitimately lacks the ``val_*`` metrics.
    """
    best = cfg.trainer.best_metric
    if best in row or not any(str(key).startswith("val_") for key in row):
        return
    raise ConfigError(
        f"trainer.best_metric={best} is not among the metrics this run's evaluation recorded: "
        f"{', '.join(sorted(row))} (stopped before writing metrics.jsonl or a checkpoint of this epoch)"
    )


# ---------------------------------------------------------------------------------------------- the run


def build_checked_method(
    task: Any,
    cfg: Any,
    student: nn.Module,
    teacher: Optional[nn.Module],
    data: Any,
    device: torch.device,
    *,
    out_dir: Path,
    is_main: bool,
) -> tuple[nn.Module, Any]:
    """``task.build_method(...)`` between the preflight checks; returns what it returns.

    Order: the run folder, then what needs the networks (before the loss terms probe them with the
    data's shape), then what needs the method (its parameters, its terms' metric keys). Nothing is
    written into the run folder.
    """
    check_out_dir(Path(out_dir), is_main=is_main)
    check_networks(cfg, data, student, teacher)
    method, data = task.build_method(cfg, student, teacher, data, device)
    check_something_to_train(cfg, method, student)
    check_best_metric(cfg, method)
    return method, data
