"""The shared third-party CIFAR-10 teachers (akamaster) classify the shared JPEG test set.

Needs ../shared (present in CI); skipped with a reason elsewhere.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlab.models import create_model

pytestmark = pytest.mark.shared

#: CIFAR-10 label order = alphabetical order of the class folders
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
#: the teachers were trained on inputs normalised with ImageNet statistics
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=1)  # decoded once for both tests (about 10 s)
def decode_test_set(zip_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``test/<class>/*.jpg`` images as a normalised (N, 3, 32, 32) float tensor and their labels."""
    images, labels = [], []
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("test/") and n.endswith(".jpg"))
        for name in names:
            with Image.open(io.BytesIO(archive.read(name))) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(CLASSES.index(name.split("/")[1]))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std, torch.tensor(labels)


@pytest.fixture
def cifar10_test(shared_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return decode_test_set(shared_dir / "data" / "cifar10-jpg.zip")


def top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            predictions = model(images[start : start + batch]).argmax(1)
            correct += int((predictions == labels[start : start + batch]).sum())
    return correct / len(images)


def test_resnet56_option_a_teacher_reaches_its_published_accuracy(
    shared_dir: Path, cifar10_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = cifar10_test
    assert len(images) == 10_000
    model = create_model(
        "resnet56", num_classes=10, shortcut="A", checkpoint=shared_dir / "teachers" / "resnet56-4bfd9763.th"
    )
    assert top1(model, images, labels) >= 0.80  # 83.2% on these lossy JPEGs


def test_resnet20_option_a_teacher_on_a_balanced_subset(
    shared_dir: Path, cifar10_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = cifar10_test
    subset = torch.cat([torch.nonzero(labels == c).flatten()[:200] for c in range(10)])
    model = create_model(
        "resnet20", num_classes=10, shortcut="A", checkpoint=shared_dir / "teachers" / "resnet20-12fca82f.th"
    )
    assert top1(model, images[subset], labels[subset]) >= 0.78  # 81.0% on the full set
