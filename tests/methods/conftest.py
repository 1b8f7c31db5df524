"""Method tests run single-threaded: their tensors are tiny, and on a shared 2-core machine
a second intra-op thread mostly adds synchronisation cost."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
