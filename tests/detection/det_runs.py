"""A tiny made detection set and tiny detector configs for the trainer-level detection tests."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from kdlab.config import load_config
from kdlab.data.detection import MakeDetectionOptions, make_detection_dataset
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.engine.trainer import Trainer, TrainResult

REPO = Path(__file__).resolve().parents[2]
#: 16 training canvases / batch 4 = 4 steps per epoch
STEPS_PER_EPOCH = 4


def make_canvases(out: Path) -> Path:
    make_detection_dataset("digits", out, MakeDetectionOptions(
        seed=0, train=16, test=8, canvas=32, min_objects=1, max_objects=2, min_size=8, max_size=16,
    ))
    return out


DETECTOR = ("{returned_stages: [2, 3], fpn_channels: 8, representation_size: 16, anchor_sizes: [[8], [16], [32]], "
            "rpn_pre_nms_top_n_train: 100, rpn_post_nms_top_n_train: 40, rpn_pre_nms_top_n_test: 100, "
            "rpn_post_nms_top_n_test: 20, rpn_batch_size_per_image: 32, box_batch_size_per_image: 16, "
            "box_detections_per_img: 10}")


def tiny(data: Path) -> list[str]:
    return [
        "task=detection", "data.name=coco", f"data.root={data}", "data.batch_size=4", "data.eval_batch_size=8",
        "data.num_workers=0", "model.name=det:fasterrcnn_resnet8_fpn", f"model.kwargs={DETECTOR}",
        "trainer.device=cpu", "trainer.progress=none", "trainer.epochs=2", "optim.lr=0.01", "schedule.name=cosine",
    ]


def with_teacher(teacher: Path) -> list[str]:
    return [f"teacher.checkpoint={teacher}",
            "distill.terms=[{name: det}, {name: roi_ckd, weight: 0.1}, {name: fpn_fitnet, weight: 0.5}]"]


def train(data: Path, out: Path, *overrides: str, resume: Optional[str] = None) -> TrainResult:
    cfg = load_config(None, [*tiny(data), f"trainer.out_dir={out}", *overrides])
    return Trainer(cfg).fit(resume=resume)


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run / "checkpoints" / "last.pt")["model"]
