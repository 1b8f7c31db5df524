"""Image classification: batches of (B, C, H, W) images and class targets, top-1/top-5 or kNN accuracy."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from kdlab import collectives
from kdlab.tasks.base import EvalParts, Task


class ClassificationTask(Task):
    name = "classification"
    summary_keys = ("val_top1", "val_top5")

    def build_data(
        self, cfg: Any, *, device: torch.device, rank: int, world_size: int, channels_last: bool, progress: bool
    ) -> Any:
        from kdlab.data import build_data
        from kdlab.engine.knn_index import verify_knn_index

        data = build_data(
            cfg.data, seed=cfg.trainer.seed, device=device, rank=rank, world_size=world_size,
            channels_last=channels_last, progress=progress,
        )
        verify_knn_index(cfg, data.fingerprint)  # a neighbour file of another teacher/dataset is refused
        return data

    def build_networks(self, cfg: Any, data: Any, *, unsafe_load: bool) -> tuple[nn.Module, Optional[nn.Module]]:
        from kdlab.engine import builders
        from kdlab.engine.teacher import FrozenTeacher

        student = builders.build_student(cfg, data.num_classes, data.in_chans, unsafe_load=unsafe_load)
        if cfg.model.frozen:
            student = FrozenTeacher(student)
        if cfg.teachers:  # several: a TeacherSet of frozen teachers, each built as teacher.* would build it
            from kdlab.engine.teacher import build_teachers

            return student, build_teachers(
                cfg, data.num_classes, data.in_chans, data.mean, data.std, unsafe_load=unsafe_load
            )
        teacher = builders.build_teacher(
            cfg, data.num_classes, data.in_chans, data.mean, data.std, unsafe_load=unsafe_load
        )
        return student, teacher

    def memory_format(self, cfg: Any) -> torch.memory_format:
        from kdlab.engine.builders import channels_last

        return torch.channels_last if channels_last(cfg) else torch.contiguous_format

    def build_method(
        self, cfg: Any, student: nn.Module, teacher: Optional[nn.Module], data: Any, device: torch.device
    ) -> tuple[nn.Module, Any]:
        from kdlab.methods.build import build_distiller

        method = build_distiller(
            cfg,
            student,
            teacher,
            num_classes=cfg.model.num_classes or data.num_classes,
            train_size=data.train_size,
            image_size=data.image_size,
            in_chans=data.in_chans,
            steps_per_epoch=data.train.steps_per_epoch,
            device=device,
            extra={"train_targets": data.train_targets},
        )
        method.to(device)
        if cfg.distill.teacher_cache:
            # batches then carry "teacher_features" read from the cache instead of a live teacher forward
            # (with several teachers: {teacher key: features} of the teachers a cache can feed)
            from kdlab.cache import use_teacher_cache

            data = use_teacher_cache(cfg, data, method, device)
        return method, data

    def accumulate(self, sums: dict[str, Any], out: Any, batch: dict[str, Any], method: nn.Module) -> None:
        if out.logits is not None and method.labels and "target" in batch:
            correct = (out.logits.detach().argmax(1) == batch["target"]).sum()
            sums["_correct"] = sums.get("_correct", 0) + correct
            sums["_seen"] = sums.get("_seen", 0) + batch["target"].numel()

    def train_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        if sums.get("_seen"):
            return {"train_top1": 100.0 * sums["_correct"] / sums["_seen"]}
        return {}

    def evaluate(self, parts: EvalParts) -> dict[str, Any]:
        """Top-1/top-5/loss on the evaluation split (kNN accuracy for label-free runs).

        Under DDP each rank measures its shard and the counts are summed, so the result
        equals a single pass over every sample once.
        """
        from kdlab.engine.evaluate import classify, embed

        cfg, student, method, data = parts.cfg, parts.student, parts.method, parts.data
        # the checkpoint holds rank 0's BatchNorm statistics: measure those on every shard
        collectives.broadcast_buffers(student)
        if not method.labels:
            from kdlab.eval.knn import knn_accuracy

            k = cfg.eval.knn_k[0] if cfg.eval.knn_k else 20
            train_x, train_y, _ = embed(student, data.train_eval, gather_across_ranks=True)
            test_x, test_y, _ = embed(student, data.eval, gather_across_ranks=True)
            acc = knn_accuracy(
                train_x, train_y, test_x, test_y, ks=(k,), temperature=cfg.eval.knn_temperature,
                num_classes=data.num_classes,
            )
            return {f"val_knn{k}": acc[k], "val_top1": acc[k]}
        result = classify(student, data.eval, autocast=parts.autocast, reduce_across_ranks=True)
        row = {"val_top1": result["top1"], "val_top5": result["top5"], "val_loss": result["loss"]}
        for key, term in method.terms.items():
            extra = term.evaluate(student, data.eval)
            row.update({f"val_{key}_{name}": value for name, value in _shard_mean(extra, data.eval.num_samples).items()})
        return row


def _shard_mean(values: dict[str, float], shard_size: int) -> dict[str, float]:
    """Per-shard means of a term's eval metrics -> the mean over the whole split (weighted by shard size)."""
    if not collectives.is_distributed() or not values:
        return values
    keys = sorted(values)
    weight = float(shard_size)
    packed = torch.tensor([float(values[k]) * weight for k in keys] + [weight], dtype=torch.float64)
    total = collectives.all_reduce_sum(packed).tolist()
    return {k: v / max(total[-1], 1.0) for k, v in zip(keys, total[:-1])}
