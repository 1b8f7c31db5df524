"""Which training samples a run uses and with which labels: ``data.subset``, ``data.per_class``, ``data.label_noise``.

All three are fixed by the data config and the dataset alone (never by
``trainer.seed``), so every method and every seed of a comparison trains on
the same images with the same labels. Evaluation splits are never touched.

* ``data.subset: N`` -- a fixed random N of the training samples (:func:`subset_selection`).
* ``data.per_class`` -- then, of the (subset) training images of each class, an integer ``K`` keeps K,
  a fraction ``f`` keeps ``round(f * n_c)`` (halves up, at least 1 of a non-empty class). Which images a
  class keeps is the first K of a fixed permutation of that class's images, so a smaller K is a subset
  of a larger one (5-shot within 10-shot). A class with fewer than K images is a :class:`DataError`.
* ``data.label_noise: {rate, seed}`` -- of the N final training samples (after the selection above and
  after any undecodable image was skipped), exactly ``round(rate * N)`` (halves up) have their label
  replaced by a class drawn uniformly from the *other* classes; which samples and which classes depend
  on (seed, N, number of classes) only, and a lower rate changes a subset of a higher rate's labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .decisions import subset_selection
from .errors import DataError
from .seeding import generator_for
from .sources import DatasetSource


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (2.5 -> 3, unlike Python's round)."""
    return int(math.floor(value + 0.5))


def per_class_counts(per_class: int | float, class_sizes: Sequence[int]) -> list[int]:
    """How many images each class keeps under ``data.per_class`` (no check against the class sizes)."""
    if isinstance(per_class, int):
        return [int(per_class)] * len(class_sizes)
    return [min(n, max(1, round_half_up(per_class * n))) if n else 0 for n in class_sizes]


def per_class_selection(
    per_class: int | float, labels: np.ndarray, classes: Sequence[str], *, after_subset: Optional[int] = None
) -> np.ndarray:
    """Sorted positions in ``labels`` of the images ``data.per_class`` keeps (see the module docstring).

    ``after_subset``: the data.subset size, when ``labels`` are those of the subset (named in errors).
    """
    labels = np.asarray(labels, dtype=np.int64)
    members = [np.flatnonzero(labels == c) for c in range(len(classes))]
    sizes = [len(m) for m in members]
    counts = per_class_counts(per_class, sizes)
    short = [c for c, (n, k) in enumerate(zip(sizes, counts)) if k > n]
    if short:
        where = f"the data.subset={after_subset} training images" if after_subset is not None else "the training set"
        first = short[0]
        smallest = min(sizes)
        others = f"; {len(short)} classes have fewer than {per_class}" if len(short) > 1 else ""
        fits = f"; every class has at least {smallest}" if smallest > 0 else ""
        raise DataError(
            f"data.per_class={per_class} exceeds the {sizes[first]} image(s) of class {classes[first]!r} "
            f"(label {first}) in {where}{others}{fits}"
        )
    kept = []
    for c, (positions, count) in enumerate(zip(members, counts)):
        if count == 0:
            continue
        # the permutation depends on the class and its size only, not on the count: nested selections
        order = torch.randperm(len(positions), generator=generator_for("per_class", c, len(positions)))
        kept.append(positions[np.sort(order[:count].numpy())])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def training_selection(cfg: Any, source: DatasetSource) -> Optional[np.ndarray]:
    """Sorted indices into ``source.train`` of the run's training samples (subset, then per class), or None: all."""
    selection = subset_selection(cfg, len(source.train))
    per_class = getattr(cfg, "per_class", None)
    if per_class is None:
        return selection
    pool = selection if selection is not None else np.arange(len(source.train), dtype=np.int64)
    picked = per_class_selection(
        per_class, source.train.labels[pool], source.classes,
        after_subset=int(cfg.subset) if selection is not None else None,
    )
    if selection is None and picked.size == pool.size:
        return None  # every image kept (e.g. per_class: 1.0): exactly the run without per_class
    return pool[picked]


def describe_per_class(cfg: Any, source: DatasetSource, selection: Optional[np.ndarray]) -> Optional[str]:
    """The line announcing ``data.per_class`` (None when unset)."""
    per_class = getattr(cfg, "per_class", None)
    if per_class is None:
        return None
    labels = source.train.labels if selection is None else source.train.labels[selection]
    sizes = np.bincount(labels, minlength=len(source.classes))
    low, high = int(sizes.min()), int(sizes.max())
    each = f"{low}" if low == high else f"{low} to {high}"
    pool = f"the data.subset={cfg.subset} images" if cfg.subset is not None else f"{len(source.train)}"
    return (
        f"data.per_class={per_class}: {int(labels.shape[0])} of {pool} training images, "
        f"{each} per class ({len(source.classes)} classes); evaluation uses the whole {source.eval.name} split"
    )


@dataclass(frozen=True)
class LabelNoise:
    """The resolved ``data.label_noise``: a rate in (0, 1) and its seed."""

    rate: float
    seed: int

    def key(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed}


def label_noise_spec(cfg: Any) -> Optional[LabelNoise]:
    """``data.label_noise`` when it changes labels (rate > 0), else None."""
    noise = getattr(cfg, "label_noise", None)
    rate = getattr(noise, "rate", None)
    if rate is None or float(rate) == 0.0:
        return None
    rate = float(rate)
    if not 0.0 < rate < 1.0:
        raise DataError(f"data.label_noise.rate={rate!r} is out of range: must be in [0, 1)")
    seed = getattr(noise, "seed", None)
    return LabelNoise(rate=rate, seed=0 if seed is None else int(seed))


@dataclass(frozen=True)
class NoiseResult:
    """What :func:`apply_label_noise` did."""

    labels: np.ndarray
    changed: int
    total: int
    noise: LabelNoise

    def describe(self) -> str:
        return (
            f"data.label_noise: {self.changed} of {self.total} training labels replaced by a different class "
            f"(rate {self.noise.rate:g}, seed {self.noise.seed}); evaluation labels unchanged"
        )


def apply_label_noise(labels: np.ndarray, num_classes: int, noise: LabelNoise) -> NoiseResult:
    """A copy of ``labels`` with exactly ``round(rate * N)`` (halves up) of them moved to another class.

    The samples are the first of a permutation of the N positions and each gets ``(label + offset) % C``
    with an offset drawn uniformly from 1..C-1 (so uniformly one of the other C - 1 classes); both come
    from a generator seeded by (seed, N, C), drawn for every position, so a lower rate's changes are a
    prefix of a higher rate's.
    """
    labels = np.asarray(labels, dtype=np.int64)
    total = int(labels.shape[0])
    if num_classes < 2:
        raise DataError(f"data.label_noise needs at least 2 classes to move a label to another; the dataset has "
                        f"{num_classes}")
    count = min(total, round_half_up(noise.rate * total))
    generator = generator_for("label_noise", noise.seed, total, num_classes)
    order = torch.randperm(total, generator=generator)
    offsets = torch.randint(1, num_classes, (total,), generator=generator)
    chosen = order[:count].numpy()
    noisy = labels.copy()
    noisy[chosen] = (labels[chosen] + offsets[:count].numpy()) % num_classes
    return NoiseResult(labels=noisy, changed=count, total=total, noise=noise)
