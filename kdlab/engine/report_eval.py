"""Evaluate a trained checkpoint: top-k, kNN, linear probe, teacher-student manifold metrics.

Measured on the student's pooled (backbone) embedding. When the run's loss
terms own a projection head (CoSS, SEED, ... with a student narrower than the
teacher), the head's output is reported too, under ``<term key>_head_`` keys:
kNN accuracy and the manifold metrics (where, its width matching the
teacher's, the per-sample and per-dimension cosines are defined).

For a label-free run (``distill.labels: false``) the student's classifier was
never trained: top-1/top-5 are not reported and kNN accuracy is always on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from kdlab.config import Config, ConfigError
from kdlab.engine import builders
from kdlab.engine.checkpoint import CheckpointError
from kdlab.engine.evaluate import classify, embed
from kdlab.engine.inheritance_eval import InheritanceRequest, inheritance_metrics

#: rows projected through a head at once
_HEAD_CHUNK = 4096


def embedding_data(cfg: Config, device: torch.device, progress: bool = False) -> Any:
    """The run's DataBundle for embedding passes only: plain random batches, so no kNN index is needed yet."""
    from kdlab.data import build_data

    data_cfg = dataclasses.replace(cfg.data, sampler="random", batch_size=1)
    return build_data(data_cfg, seed=cfg.trainer.seed, device=device, progress=progress)


def evaluate_detector(cfg: Config, checkpoint: str, device: torch.device, *, unsafe_load: bool = False) -> dict[str, Any]:
    """COCO mAP of a detector checkpoint: ``val_map``, ``val_map50``, ``val_map75``, ``val_map_small``,
    ``val_map_medium``, ``val_map_large`` (fractions in [0, 1], pycocotools' convention)."""
    from kdlab.engine.detection_eval import detection_metrics
    from kdlab.models.checkpoint import load_checkpoint
    from kdlab.tasks import get_task

    task = get_task("detection")
    data = task.build_data(cfg, device=device, rank=0, world_size=1, channels_last=False, progress=False)
    model_cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, checkpoint=None), teacher=dataclasses.replace(
            cfg.teacher, name=None, checkpoint=None)
    )
    student, _ = task.build_networks(model_cfg, data, unsafe_load=unsafe_load)
    load_checkpoint(student, checkpoint, unsafe=unsafe_load)
    student.to(device).eval()
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "samples": data.eval.num_samples}
    result.update(detection_metrics(student, data))
    return result


def evaluate_checkpoint(
    cfg: Config,
    checkpoint: str,
    *,
    knn: bool = False,
    linear_probe: bool = False,
    manifold: bool = False,
    plot_path: Optional[str] = None,
    unsafe_load: bool = False,
    inherit: Optional[InheritanceRequest] = None,
) -> dict[str, Any]:
    """Everything `kdlab eval` reports, as a dict (percentages for accuracies).

    Keys: ``val_top1``/``val_top5``/``val_loss`` (runs with labels), ``knn<k>``,
    ``linear_top1``/``linear_top5``, ``manifold_<metric>``, ``manifold_plot``, the
    same ``knn``/``manifold`` keys prefixed ``<term>_head_`` for each projection head, and
    what ``inherit`` asks (corruptions, transfer, retrieval: :mod:`kdlab.engine.inheritance_eval`).
    """
    from kdlab.models.checkpoint import load_checkpoint

    device = builders.resolve_device(cfg.trainer.device)
    if not Path(checkpoint).exists():
        raise ConfigError(f"--checkpoint {checkpoint}: file not found")
    if cfg.task == "detection":
        if knn or linear_probe or manifold or (inherit is not None and inherit.wanted):
            raise ConfigError("--knn, --linear-probe, --manifold, --corruptions, --eval-set, --transfer and "
                              "--retrieval measure classifiers, not task: detection")
        return evaluate_detector(cfg, checkpoint, device, unsafe_load=unsafe_load)
    data = embedding_data(cfg, device)
    model_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, checkpoint=None))
    student = builders.build_student(model_cfg, data.num_classes, data.in_chans)
    loaded = load_checkpoint(student, checkpoint, unsafe=unsafe_load)
    student.to(device).eval()
    knn = knn or not cfg.distill.labels
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "samples": data.eval.num_samples}
    if cfg.distill.labels:
        result.update({f"val_{k}": v for k, v in classify(student, data.eval).items()})
    inherit = inherit if inherit is not None and inherit.wanted else None
    if not (knn or linear_probe or manifold or inherit):
        return result

    teacher = _LazyTeacher(cfg, data, device, unsafe_load)
    needs_train = knn or linear_probe or manifold or (inherit is not None and inherit.needs_classifier
                                                       and not cfg.distill.labels)
    needs_test = knn or linear_probe or manifold or (inherit is not None and inherit.retrieval)
    train_x, train_y, _ = embed(student, data.train_eval) if needs_train else (None, None, None)
    test_x, test_y, _ = embed(student, data.eval) if needs_test else (None, None, None)
    heads = projection_heads(cfg, data, device, student, loaded.extra.get("method"), teacher) if knn or manifold else {}
    head_views: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, head in heads.items():
        head_train, head_test = _project(head, train_x, device), _project(head, test_x, device)
        if head_train is not None and head_test is not None:  # None: the embedding is compared as is
            head_views[key] = (head_train, head_test)
    if knn:
        result.update(_knn(cfg, data, train_x, train_y, test_x, test_y))
        for key, (head_train, head_test) in head_views.items():
            scores = _knn(cfg, data, head_train, train_y, head_test, test_y)
            result.update({f"{key}_head_{name}": value for name, value in scores.items()})
    if linear_probe:
        from kdlab.eval import linear_probe as probe

        out = probe(
            train_x, train_y, test_x, test_y, method=cfg.eval.probe_method, epochs=cfg.eval.probe_epochs,
            lr=cfg.eval.probe_lr, milestones=tuple(cfg.eval.probe_milestones), seed=cfg.trainer.seed,
        )
        result["linear_top1"], result["linear_top5"] = out["top1"], out["top5"]
    if manifold:
        heads_test = {key: views[1] for key, views in head_views.items()}
        result.update(_manifold(teacher.get(), data, test_x, heads_test, test_y, plot_path, cfg.trainer.seed))
    if inherit is not None:
        result.update(inheritance_metrics(
            cfg, data, student, inherit, device=device,
            train=None if train_x is None else (train_x, train_y), test=None if test_x is None else (test_x, test_y),
        ))
    return result


class _LazyTeacher:
    """The config's frozen teacher, built on first use (only manifold metrics and heads need it)."""

    def __init__(self, cfg: Config, data: Any, device: torch.device, unsafe_load: bool) -> None:
        self.cfg, self.data, self.device, self.unsafe_load = cfg, data, device, unsafe_load
        self._teacher: Optional[nn.Module] = None

    def get(self) -> nn.Module:
        if self._teacher is None:
            teacher = builders.build_teacher(
                self.cfg, self.data.num_classes, self.data.in_chans, self.data.mean, self.data.std,
                unsafe_load=self.unsafe_load,
            )
            if teacher is None:
                raise ConfigError("--manifold compares with the teacher: set teacher.name and teacher.checkpoint")
            self._teacher = teacher.to(self.device)
        return self._teacher


def _overrides_eval_embedding(cls: type) -> bool:
    from kdlab.methods.base import LossTerm

    return getattr(cls, "eval_embedding", None) is not LossTerm.eval_embedding


def projection_heads(
    cfg: Config,
    data: Any,
    device: torch.device,
    student: nn.Module,
    method_state: Optional[dict[str, torch.Tensor]],
    teacher: _LazyTeacher,
) -> dict[str, nn.Module]:
    """The run's loss terms that report an extra embedding (``eval_embedding``), with their trained weights.

    Empty when no configured term has such a hook or the checkpoint holds no method state
    (e.g. a plain model file). The terms are rebuilt from the config, then loaded from the
    checkpoint's ``method`` entry; a mismatch is a :class:`CheckpointError`.
    """
    from kdlab.methods.base import term_registry
    from kdlab.methods.build import build_distiller

    registry = term_registry(cfg.task)
    if not method_state or not any(
        _overrides_eval_embedding(registry[t["name"]]) for t in cfg.distill.terms if t.get("name") in registry
    ):
        return {}
    distiller = build_distiller(
        cfg,
        student,
        teacher.get(),
        num_classes=cfg.model.num_classes or data.num_classes,
        train_size=data.train_size,
        image_size=data.image_size,
        in_chans=data.in_chans,
        steps_per_epoch=1,
        device=device,
    )
    term_state = {k[len("terms.") :]: v for k, v in method_state.items() if k.startswith("terms.")}
    missing, unexpected = distiller.terms.load_state_dict(term_state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"the checkpoint's loss-term state does not fit distill.terms: missing {missing}, unexpected {unexpected}"
        )
    distiller.terms.eval()
    return {key: term for key, term in distiller.terms.items() if _overrides_eval_embedding(type(term))}


@torch.no_grad()
def _project(term: nn.Module, x: torch.Tensor, device: torch.device) -> Optional[torch.Tensor]:
    """``term.eval_embedding`` of every row of ``x`` (on the CPU); None when the term reports no extra embedding."""
    outputs = []
    for chunk in x.split(_HEAD_CHUNK):
        out = term.eval_embedding(chunk.to(device))  # type: ignore[operator]
        if out is None:
            return None
        outputs.append(out.float().cpu())
    return torch.cat(outputs)


def _knn(
    cfg: Config, data: Any, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> dict[str, float]:
    from kdlab.eval import knn_accuracy

    accs = knn_accuracy(
        train_x, train_y, test_x, test_y, ks=tuple(cfg.eval.knn_k),
        temperature=cfg.eval.knn_temperature, num_classes=data.num_classes,
    )
    return {f"knn{k}": v for k, v in accs.items()}


def _manifold(
    teacher: nn.Module,
    data: Any,
    student_x: torch.Tensor,
    heads_x: dict[str, torch.Tensor],
    labels: torch.Tensor,
    plot_path: Optional[str],
    seed: int,
) -> dict[str, Any]:
    """Teacher-student CKA, kNN overlap and cosines on the eval split (+ each head's output), and a t-SNE plot."""
    from kdlab.eval import manifold_report, plot_embedding_2d

    teacher_x, _, _ = embed(teacher, data.eval)
    report: dict[str, Any] = {f"manifold_{k}": v for k, v in manifold_report(teacher_x, student_x).items()}
    panels = {"teacher": teacher_x, "student": student_x}
    for key, head_x in heads_x.items():
        report.update({f"{key}_head_manifold_{k}": v for k, v in manifold_report(teacher_x, head_x).items()})
        panels[f"student + {key} head"] = head_x
    if plot_path:
        plot_embedding_2d(panels, labels, plot_path, method="tsne", seed=seed)
        report["manifold_plot"] = str(plot_path)
    return report
