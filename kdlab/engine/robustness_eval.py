"""Top-1 under corruptions and on other evaluation sets (``kdlab eval --corruptions / --corruptions-from / --eval-set``).

Several networks (the checkpoint and its references) are scored in **one pass** over the
evaluation split: every chunk of images is corrupted once per (corruption, severity) and the
same corrupted images go to every network, each fed as it expects (its resolution, channels
and normalisation: :mod:`kdlab.engine.input_adapt`).

Determinism: the split is cut into chunks of :data:`CHUNK` images in index order, whatever
``data.eval_batch_size`` is; chunk k of corruption c at severity s draws its randomness from a
generator seeded with ``(seed, c, s, k)`` on the images' device. The same seed, subset and device
type give the same corrupted images, so every model sees the same test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from kdlab.config import ConfigError
from kdlab.engine.input_adapt import InputSpec, to_input, to_unit

#: images per corrupted chunk (fixed, so corrupted images do not depend on the evaluation batch size)
CHUNK = 256
SEVERITIES = (1, 2, 3, 4, 5)

#: one network to score: the module and what it expects at its input
Scored = tuple[nn.Module, InputSpec]


@dataclass(frozen=True)
class CorruptionRequest:
    """Which corruptions, at which severities, on how many evaluation images, with which seed."""

    names: tuple[str, ...]
    severities: tuple[int, ...] = SEVERITIES
    samples: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        from kdlab.eval.corruptions import CORRUPTIONS

        unknown = [name for name in self.names if name not in CORRUPTIONS]
        if unknown:
            raise ConfigError(f"--corruptions: unknown corruption {unknown[0]!r} (known: {', '.join(CORRUPTIONS)})")
        if not self.names:
            raise ConfigError("--corruptions: no corruption named")
        bad = [s for s in self.severities if s not in SEVERITIES]
        if bad or not self.severities:
            raise ConfigError(f"--severities: {bad[0] if bad else 'none'} is not a severity (1 to 5)")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"--corruption-samples must be at least 1, got {self.samples}")

    def settings(self) -> dict[str, Any]:
        """What decides the corrupted images, recorded beside the results."""
        return {"names": list(self.names), "severities": list(self.severities), "samples": self.samples,
                "seed": self.seed, "chunk": CHUNK}


@dataclass
class _Counts:
    correct: dict[tuple[str, int], int] = field(default_factory=dict)
    seen: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, key: tuple[str, int], logits: torch.Tensor, target: torch.Tensor) -> None:
        self.correct[key] = self.correct.get(key, 0) + int((logits.argmax(1) == target).sum())
        self.seen[key] = self.seen.get(key, 0) + int(target.numel())

    def top1(self, key: tuple[str, int]) -> float:
        return 100.0 * self.correct[key] / self.seen[key]


def unit_chunks(stream: Any, mean: Sequence[float], std: Sequence[float],
                chunk: int = CHUNK) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The stream's images back in [0, 1] with their labels, regrouped into chunks of ``chunk`` images."""
    images: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    held = 0
    for batch in stream:
        x = batch["image"][:, 0] if batch["image"].dim() == 5 else batch["image"]
        images.append(to_unit(x, mean, std))
        targets.append(batch["target"])
        held += x.shape[0]
        while held >= chunk:
            merged, labels = torch.cat(images), torch.cat(targets)
            yield merged[:chunk], labels[:chunk]
            images, targets, held = [merged[chunk:]], [labels[chunk:]], held - chunk
    if held:
        yield torch.cat(images), torch.cat(targets)


def _logits(network: nn.Module, unit: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    return network(to_input(unit, spec)).float()


@torch.no_grad()
def corruption_scores(
    networks: Mapping[str, Scored],
    stream: Any,
    mean: Sequence[float],
    std: Sequence[float],
    request: CorruptionRequest,
    *,
    on_chunk: Optional[Callable[[int], None]] = None,
) -> dict[str, dict[str, Any]]:
    """Top-1 of every network on the clean and the corrupted images of ``stream``.

    ``stream`` yields normalised batches (``mean``/``std``); ``request.samples`` should already
    be applied to it (:func:`kdlab.data.eval_subset.eval_subset`). Returns, per network label,
    ``{"clean_top1": %, "corruptions": {name: {severity: %}}, "mean_corruption_top1": %}``.
    """
    from kdlab.data.seeding import derive_seed
    from kdlab.eval.corruption_scores import mean_corruption_accuracy
    from kdlab.eval.corruptions import CORRUPTIONS, corrupt

    for network, _ in networks.values():
        network.eval()
    counts = {label: _Counts() for label in networks}
    for k, (unit, target) in enumerate(unit_chunks(stream, mean, std)):
        for label, (network, spec) in networks.items():
            counts[label].add(("clean", 0), _logits(network, unit, spec), target)
        for name in request.names:
            for severity in request.severities:
                generator = torch.Generator(device=unit.device)
                generator.manual_seed(derive_seed("corruption", request.seed, CORRUPTIONS.index(name), severity, k))
                corrupted = corrupt(unit, name, severity, generator=generator)
                for label, (network, spec) in networks.items():
                    counts[label].add((name, severity), _logits(network, corrupted, spec), target)
        if on_chunk is not None:
            on_chunk(k)
    results = {}
    for label, count in counts.items():
        cells = {name: {s: count.top1((name, s)) for s in request.severities} for name in request.names}
        results[label] = {"clean_top1": count.top1(("clean", 0)), "corruptions": cells,
                          "mean_corruption_top1": mean_corruption_accuracy(cells)}
    return results


def _split_batches(split: Any, size: int, batch_size: int, num_workers: int,
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A released set's split as [0, 1] batches at ``size`` x ``size`` (already that size: untouched)."""
    import numpy as np
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    from kdlab.data.standard import EvalDataset
    from kdlab.data.transforms import FitSquare

    if split.arrays is not None:
        for start in range(0, len(split), batch_size):
            images = torch.from_numpy(np.ascontiguousarray(split.arrays[start:start + batch_size])).to(device)
            labels = torch.from_numpy(split.labels[start:start + batch_size]).to(device)
            yield images.float().div_(255.0), labels
        return
    dataset = EvalDataset(split, T.Compose([FitSquare(size), T.ToTensor()]), np.arange(len(split)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for images, labels, _ in loader:
        yield images.to(device), labels.to(device)


@torch.no_grad()
def split_scores(networks: Mapping[str, Scored], split: Any, *, size: int, batch_size: int, num_workers: int,
                 device: torch.device) -> dict[str, float]:
    """Top-1 (%) of every network on one labelled split (a released corruption cell, another test set)."""
    counts = {label: _Counts() for label in networks}
    for unit, target in _split_batches(split, size, batch_size, num_workers, device):
        for label, (network, spec) in networks.items():
            network.eval()
            counts[label].add(("set", 0), _logits(network, unit, spec), target)
    return {label: count.top1(("set", 0)) for label, count in counts.items()}


def corruption_set_scores(networks: Mapping[str, Scored], root: str, classes: Sequence[str], *,
                          names: Optional[Sequence[str]], severities: Sequence[int], size: int, batch_size: int,
                          num_workers: int, device: torch.device) -> dict[str, dict[str, Any]]:
    """Like :func:`corruption_scores`, on a released set (CIFAR-10-C ``.npy`` or ImageNet-C folders) at ``root``."""
    from kdlab.data.sources.labelled_folder import open_corruption_set
    from kdlab.eval.corruption_scores import mean_corruption_accuracy

    cells: dict[str, dict[str, dict[int, float]]] = {label: {} for label in networks}
    for cell in open_corruption_set(root, classes, names=names, severities=severities):
        scores = split_scores(networks, cell.split, size=size, batch_size=batch_size, num_workers=num_workers,
                              device=device)
        for label, top1 in scores.items():
            cells[label].setdefault(cell.corruption, {})[cell.severity] = top1
    return {label: {"corruptions": by_name, "mean_corruption_top1": mean_corruption_accuracy(by_name)}
            for label, by_name in cells.items()}
