"""Evaluate a trained checkpoint: top-k, kNN, linear probe, teacher-student manifold metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch

from kdlab.config import Config, ConfigError
from kdlab.engine import builders
from kdlab.engine.evaluate import classify, embed


def evaluate_checkpoint(
    cfg: Config,
    checkpoint: str,
    *,
    knn: bool = False,
    linear_probe: bool = False,
    manifold: bool = False,
    plot_path: Optional[str] = None,
    unsafe_load: bool = False,
) -> dict[str, Any]:
    """Everything `kdlab eval` reports, as a dict (percentages for accuracies)."""
    from kdlab.data import build_data
    from kdlab.models.checkpoint import load_checkpoint

    device = builders.resolve_device(cfg.trainer.device)
    data = build_data(cfg.data, seed=cfg.trainer.seed, device=device)
    model_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, checkpoint=None))
    student = builders.build_student(model_cfg, data.num_classes, data.in_chans)
    if not Path(checkpoint).exists():
        raise ConfigError(f"--checkpoint {checkpoint}: file not found")
    load_checkpoint(student, checkpoint, unsafe=unsafe_load)
    student.to(device).eval()
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "samples": data.eval.num_samples}
    result.update({f"val_{k}": v for k, v in classify(student, data.eval).items()})
    if knn or linear_probe or manifold:
        train_x, train_y, _ = embed(student, data.train_eval)
        test_x, test_y, _ = embed(student, data.eval)
        if knn:
            from kdlab.eval import knn_accuracy

            accs = knn_accuracy(
                train_x, train_y, test_x, test_y, ks=tuple(cfg.eval.knn_k),
                temperature=cfg.eval.knn_temperature, num_classes=data.num_classes,
            )
            result.update({f"knn{k}": v for k, v in accs.items()})
        if linear_probe:
            from kdlab.eval import linear_probe as probe

            out = probe(
                train_x, train_y, test_x, test_y, method=cfg.eval.probe_method, epochs=cfg.eval.probe_epochs,
                lr=cfg.eval.probe_lr, milestones=tuple(cfg.eval.probe_milestones), seed=cfg.trainer.seed,
            )
            result["linear_top1"], result["linear_top5"] = out["top1"], out["top5"]
        if manifold:
            result.update(_manifold(cfg, data, device, student, test_x, test_y, plot_path, unsafe_load))
    return result


def _manifold(
    cfg: Config, data: Any, device: torch.device, student: torch.nn.Module,
    student_x: torch.Tensor, labels: torch.Tensor, plot_path: Optional[str], unsafe_load: bool,
) -> dict[str, Any]:
    from kdlab.eval import manifold_report, plot_embedding_2d

    teacher = builders.build_teacher(cfg, data.num_classes, data.in_chans, data.mean, data.std)
    if teacher is None:
        raise ConfigError("--manifold compares with the teacher: set teacher.name and teacher.checkpoint")
    teacher.to(device)
    teacher_x, _, _ = embed(teacher, data.eval)
    report = {f"manifold_{k}": v for k, v in manifold_report(teacher_x, student_x).items()}
    if plot_path:
        plot_embedding_2d({"teacher": teacher_x, "student": student_x}, labels, plot_path, method="tsne")
        report["manifold_plot"] = str(plot_path)
    return report
