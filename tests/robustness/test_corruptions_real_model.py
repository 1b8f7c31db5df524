"""The corruptions degrade a real, fixed network (the shared pretrained resnet20) on real CIFAR-10 images:
top-1 averaged over the 15 corruptions falls with the severity, and each corruption at severity 5 costs
accuracy. This is the property the published CIFAR-10-C numbers have (Hendrycks & Dietterich, Fig. 3)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlab.engine.input_adapt import InputSpec, to_input
from kdlab.eval.corruptions import CORRUPTIONS, corrupt
from kdlab.models import create_model

pytestmark = pytest.mark.shared

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_CLASS = 20


def _test_images(zip_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    with zipfile.ZipFile(zip_path) as archive:
        for label, name in enumerate(CLASSES):
            members = sorted(n for n in archive.namelist() if n.startswith(f"test/{name}/") and n.endswith(".jpg"))
            for member in members[:PER_CLASS]:
                with Image.open(io.BytesIO(archive.read(member))) as image:
                    images.append(np.asarray(image.convert("RGB")))
                labels.append(label)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255), torch.tensor(labels)


def test_a_fixed_network_loses_accuracy_as_the_severity_grows(shared_dir):
    unit, labels = _test_images(shared_dir / "data" / "cifar10-jpg.zip")
    model = create_model("resnet20", num_classes=10, shortcut="A",
                         checkpoint=shared_dir / "teachers" / "resnet20-12fca82f.th").eval()
    spec = InputSpec.of(3, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

    def top1(images: torch.Tensor) -> float:
        with torch.inference_mode():
            return 100.0 * float((model(to_input(images, spec)).argmax(1) == labels).float().mean())

    clean = top1(unit)
    assert clean > 70.0
    by_severity = {s: [] for s in range(1, 6)}
    for name in CORRUPTIONS:
        for severity in range(1, 6):
            generator = torch.Generator().manual_seed(severity)
            by_severity[severity].append(top1(corrupt(unit, name, severity, generator=generator)))
    means = [sum(values) / len(values) for values in by_severity.values()]
    assert all(a >= b for a, b in zip(means, means[1:])), means
    assert means[0] < clean and means[-1] < means[0] - 10.0, (clean, means)
    worst = dict(zip(CORRUPTIONS, by_severity[5]))
    assert all(value < clean for value in worst.values()), worst
