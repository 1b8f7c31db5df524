"""The reference: a plain PyTorch KD loop in the style of the published implementations.

torchvision ``ImageFolder`` over the extracted images, ``RandomCrop`` with
padding + horizontal flip + ``ToTensor`` + ``Normalize`` in a ``DataLoader``
(shuffle, 2 workers), NCHW float32 networks, the teacher in eval mode under
``no_grad``, Hinton's KD loss plus cross-entropy, SGD. Same networks, weights
file, batch size, loss weights and optimizer settings as the kdlab config.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from kdlab.config import Config, ConfigError

REFERENCE_WORKERS = 2


def kd_settings(cfg: Config) -> tuple[float, float, float]:
    """(cross-entropy weight, KD weight, temperature) of the config's terms; KD must be one of them."""
    weights = {t.get("name"): t for t in cfg.distill.terms}
    if "kd" not in weights:
        names = [t.get("name") for t in cfg.distill.terms]
        raise ConfigError(f"bench throughput measures KD: distill.terms must include kd, got {names}")
    ce = float(weights["ce"].get("weight", 1.0)) if "ce" in weights else 0.0
    kd = weights["kd"]
    return ce, float(kd.get("weight", 1.0)), float(kd.get("temperature", 4.0))


def extract_training_images(cfg: Config, into: Path) -> Path:
    """The training images (data.subset, data.per_class) of an ImageFolder dataset as files under ``into``: train/."""
    from kdlab.data.training_set import training_selection
    from kdlab.data.sources import list_imagefolder, open_source

    if cfg.data.name != "imagefolder":
        raise ConfigError(f"the reference loop reads an ImageFolder folder or zip; data.name={cfg.data.name!r}")
    listing = list_imagefolder(cfg.data.root)
    source = open_source(cfg.data)
    selection = training_selection(cfg.data, source)
    split = source.train.select(selection) if selection is not None else source.train
    names = list(split.files.names)  # type: ignore[union-attr]
    if listing.is_zip:
        with zipfile.ZipFile(listing.container) as archive:
            for name in names:
                archive.extract(name, into)
        return into / listing.prefix / "train"
    for name in names:
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(listing.container / name, target)
    return into / listing.prefix / "train"


class ReferenceKD:
    """Builds the plain loop from a kdlab config; :meth:`step` trains on one batch."""

    def __init__(self, cfg: Config, device: torch.device, workdir: Optional[Path] = None) -> None:
        from kdlab.data.build import normalisation, resolve_image_size
        from kdlab.data.sources import open_source
        from kdlab.engine.builders import resolve_teacher_source
        from kdlab.models import create_model

        self.device = device
        self.tmp = Path(tempfile.mkdtemp(prefix="reference-images-", dir=workdir))
        source = open_source(cfg.data)
        size = resolve_image_size(cfg.data, source)
        mean, std = normalisation(cfg.data, source)
        transform = T.Compose([
            T.RandomCrop(size, padding=cfg.data.crop_padding),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(list(mean), list(std)),
        ])
        dataset = datasets.ImageFolder(str(extract_training_images(cfg, self.tmp)), transform=transform)
        self.loader = DataLoader(
            dataset, batch_size=cfg.data.batch_size, shuffle=True, num_workers=REFERENCE_WORKERS, drop_last=True,
            pin_memory=device.type == "cuda",
        )
        classes = cfg.model.num_classes or len(source.classes)
        self.student = create_model(cfg.model.name, num_classes=classes, **cfg.model.kwargs).to(device)
        name, checkpoint, kwargs, teacher_classes = resolve_teacher_source(cfg)
        self.teacher = create_model(name, num_classes=teacher_classes or classes, checkpoint=checkpoint, **kwargs)
        self.teacher.to(device).eval()
        o = cfg.optim
        if o.name == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                self.student.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                nesterov=o.nesterov,
            )
        else:
            self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        self.ce_weight, self.kd_weight, self.temperature = kd_settings(cfg)
        self.student.train()

    def batches(self) -> Iterator[Any]:
        """A fresh pass over the loader (its workers start anew)."""
        return iter(self.loader)

    def step(self, batch: Any) -> int:
        images, targets = batch
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = self.student(images)
        t = self.temperature
        kd = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(teacher_logits / t, dim=1), reduction="batchmean")
        loss = self.ce_weight * F.cross_entropy(logits, targets) + self.kd_weight * kd * t * t
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return int(images.shape[0])

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
