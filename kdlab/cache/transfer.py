"""Host-to-device copies of the few kilobytes a cached step reads.

On CUDA a copy from pageable memory synchronises the stream first; from pinned
memory it is asynchronous. Every array read from the cache therefore goes
through :func:`to_device`, so replaying a cached step adds no host-device sync.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from kdlab.data.streams_common import to_device_async


def to_device(array: np.ndarray, device: torch.device, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``array`` as a tensor on ``device`` (pinned and non-blocking on CUDA), optionally cast to ``dtype``."""
    tensor = to_device_async(torch.from_numpy(array), device)
    return tensor if dtype is None else tensor.to(dtype)
