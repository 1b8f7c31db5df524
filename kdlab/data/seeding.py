"""Deterministic seeds derived from (seed, epoch, step, ...) tuples.

Every random draw of the data package comes from a ``torch.Generator`` seeded
here, never from the global RNG, so that any batch can be recomputed from its
coordinates alone: exact resume, identical images across process counts and
teacher-output caches all rely on this.
"""

from __future__ import annotations

import hashlib

import torch

_SEED_BITS = 63


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends on every part (their ``repr``), stable across runs and platforms."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << _SEED_BITS) - 1)


def generator_for(*parts: object) -> torch.Generator:
    """A CPU generator seeded by :func:`derive_seed` of ``parts``."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(*parts))
    return generator
