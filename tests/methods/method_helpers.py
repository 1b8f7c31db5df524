"""Helpers of the method tests: tiny zoo networks, batches and a distiller builder.

A plain module with a unique name (not conftest.py) so test files can import it.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import torch

from kdlab.config import load_config
from kdlab.engine.teacher import FrozenTeacher
from kdlab.methods.build import build_distiller
from kdlab.methods.distiller import Distiller
from kdlab.models import create_model

CLASSES = 5
IMAGE = 8
TRAIN_SIZE = 40

#: one small config per built-in distillation term (CRD with few negatives to stay fast)
TERM_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "kd": [{"name": "kd", "temperature": 4}],
    "dkd": [{"name": "dkd", "warmup": 0}],
    "ckd": [{"name": "ckd"}],
    "at": [{"name": "at"}],
    "sp": [{"name": "sp"}],
    "rkd": [{"name": "rkd"}],
    "pkt": [{"name": "pkt"}],
    "fitnet": [{"name": "fitnet"}],
    "crd": [{"name": "crd", "nce_k": 16, "feat_dim": 8}],
    "reviewkd": [{"name": "reviewkd", "warmup": 0}],
    "ofd": [{"name": "ofd"}],
    "vid": [{"name": "vid"}],
    "cc": [{"name": "cc", "feat_dim": 8}],
    "nst": [{"name": "nst"}],
    "dist": [{"name": "dist", "temperature": 4}],
    "nkd": [{"name": "nkd", "temperature": 1, "gamma": 1.5}],
}


def make_batch(n: int = 8, seed: int = 0, size: int = IMAGE, classes: int = CLASSES) -> dict[str, torch.Tensor]:
    """A deterministic labelled batch with dataset indices 0..n-1."""
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 3, size, size, generator=g),
        "target": torch.randint(0, classes, (n,), generator=g),
        "index": torch.arange(n),
    }


def tiny_student() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_model("resnet8", num_classes=CLASSES)


def tiny_teacher(classes: int = CLASSES) -> FrozenTeacher:
    """A frozen wrn_16_2: other channel counts than resnet8, so adapters are exercised."""
    torch.manual_seed(2)
    return FrozenTeacher(create_model("wrn_16_2", num_classes=classes))


def build(
    terms: list[dict[str, Any]],
    student: Optional[torch.nn.Module] = None,
    teacher: Optional[torch.nn.Module] = None,
    *,
    num_classes: int = CLASSES,
    extra: Optional[dict[str, Any]] = None,
    overrides: tuple[str, ...] = (),
) -> Distiller:
    """A Distiller from ``distill.terms`` via the real builder (config validation included)."""
    cfg = load_config(None, [f"distill.terms={json.dumps(terms)}", *overrides])
    return build_distiller(
        cfg,
        student if student is not None else tiny_student(),
        teacher if teacher is not None else tiny_teacher(),
        num_classes=num_classes,
        train_size=TRAIN_SIZE,
        image_size=IMAGE,
        in_chans=3,
        steps_per_epoch=5,
        device=torch.device("cpu"),
        extra=extra,
    )
