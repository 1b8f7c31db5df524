"""Helpers of the SSKD tests: a tiny synthetic setup and hand-made feature models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.config import Config, load_config
from kdlab.engine.checkpoint import load_checkpoint_file
from kdlab.models.features import Features

BATCH = 8  # images per training batch: the SS task's chance level is 1 / BATCH

TINY = [
    "data.name=synthetic",
    "data.synthetic_train=64",
    "data.synthetic_test=32",
    "data.synthetic_classes=4",
    "data.synthetic_size=8",
    f"data.batch_size={BATCH}",
    "data.eval_batch_size=32",
    "data.augment=crop_flip",
    "data.crop_padding=1",
    "data.num_workers=0",
    "trainer.progress=none",
    "trainer.device=cpu",
    "optim.lr=0.05",
    "schedule.name=cosine",
]


def teacher_config(out_dir: Path) -> Config:
    return load_config(
        None, [*TINY, "model.name=resnet8", "trainer.epochs=2", f"trainer.out_dir={out_dir}"]
    )


def sskd_config(teacher_run: Path, out_dir: Path, *term_params: str, epochs: int = 1) -> Config:
    """An SSKD run (resnet8 -> resnet8) on the tiny data; ``term_params`` like ``head_epochs: 3``."""
    params = ", ".join(("name: sskd", "weight: 1.0", *term_params))
    return load_config(
        None,
        [
            *TINY,
            "model.name=resnet8",
            f"teacher.checkpoint={teacher_run}",
            f"trainer.epochs={epochs}",
            f"trainer.out_dir={out_dir}",
            f"distill.terms=[{{{params}}}]",
        ],
    )


def model_state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(path)["model"]


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class LinearPixels(nn.Module):
    """A feature model on raw pixels: embedding = flattened image, logits = a fixed linear map of it.

    Every output is a known function of the exact input image, so tests can
    recompute what a term must have received for any view.
    """

    def __init__(self, pixels: int, num_classes: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(pixels, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(num_classes, pixels, generator=generator))
            self.fc.bias.zero_()
        self.num_classes = num_classes
        self.embedding_dim = pixels

    def forward_all(self, x: torch.Tensor) -> Features:
        embedding = x.flatten(1)
        return Features(logits=self.fc(embedding), embedding=embedding, stages=[], preact_stages=[])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits


class LabelOracle(nn.Module):
    """A teacher that is right on every view: images are constant, their value is the class."""

    def __init__(self, pixels: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_dim = pixels
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so device moves have something to move

    def forward_all(self, x: torch.Tensor) -> Features:
        label = x.mean(dim=(1, 2, 3)).round().long()
        logits = 10.0 * F.one_hot(label, self.num_classes).float() + self.anchor
        return Features(logits=logits, embedding=x.flatten(1), stages=[], preact_stages=[])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits


def head_state(dim: int, seed: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "0.weight": torch.randn(dim, dim, generator=generator) / dim**0.5,
        "0.bias": torch.randn(dim, generator=generator) * 0.1,
        "2.weight": torch.randn(dim, dim, generator=generator) / dim**0.5,
        "2.bias": torch.randn(dim, generator=generator) * 0.1,
    }
