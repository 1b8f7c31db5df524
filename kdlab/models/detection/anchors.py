"""Anchor sizes that follow the canvas: torchvision's layout, scaled by ``min_size / 800``.

torchvision's anchors (32..512 px, one size per FPN level) are tuned for
images resized to 800 px. A detector trained on 64-px canvases would get
anchors larger than the image, so the default here keeps torchvision's layout
and scales it with ``min_size``: ``size_l = min_size / 25 * 2**l`` for level
``l = 0, 1, ...`` (exactly torchvision's sizes at 800 px).
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.models.detection.anchor_utils import AnchorGenerator

#: the canvas torchvision's default anchor sizes were chosen for
REFERENCE_MIN_SIZE = 800
#: torchvision's smallest anchor at the reference canvas (32 px = 800 / 25)
REFERENCE_SMALLEST = 32


def default_anchor_sizes(min_size: int, num_levels: int) -> tuple[tuple[float, ...], ...]:
    """One size per FPN level, doubling per level, starting at ``min_size / 25``."""
    base = min_size * REFERENCE_SMALLEST / REFERENCE_MIN_SIZE
    return tuple((base * 2**level,) for level in range(num_levels))


def scale_anchor_sizes(sizes: Sequence[Sequence[float]], min_size: int) -> tuple[tuple[float, ...], ...]:
    """A torchvision builder's own sizes (chosen for 800 px) rescaled to ``min_size``."""
    factor = min_size / REFERENCE_MIN_SIZE
    return tuple(tuple(float(s) * factor for s in level) for level in sizes)


def make_anchor_generator(
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float] | Sequence[Sequence[float]],
    num_levels: int,
) -> AnchorGenerator:
    """A stock AnchorGenerator with one size tuple per FPN level (checked: a mismatch fails late otherwise)."""
    if len(sizes) != num_levels:
        raise ValueError(
            f"anchor_sizes has {len(sizes)} levels but the detector has {num_levels} FPN levels "
            "(the returned stages plus the max-pool level): give one size tuple per level"
        )
    if aspect_ratios and all(isinstance(a, Sequence) for a in aspect_ratios):
        ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)  # type: ignore[union-attr]
        if len(ratios) != num_levels:
            raise ValueError(f"aspect_ratios has {len(ratios)} levels, the detector has {num_levels} FPN levels")
    else:
        ratios = (tuple(float(r) for r in aspect_ratios),) * num_levels  # type: ignore[arg-type]
    generator = AnchorGenerator(tuple(tuple(float(s) for s in level) for level in sizes), ratios)
    counts = set(generator.num_anchors_per_location())
    if len(counts) != 1:
        raise ValueError(
            f"every FPN level needs the same number of anchors per location (sizes x ratios) because the RPN head "
            f"is shared across levels; got {generator.num_anchors_per_location()}"
        )
    return generator
