"""The rotate4 view layout as SSKD's terms see it.

The data layer delivers (B, 4, C, H, W) batches (view 0 the normal image,
views 1..3 rotated by 90/180/270 degrees counter-clockwise); the Distiller
flattens them image-major, so a multi-view term receives B*V feature rows in
the order image 0 views 0..3, image 1 views 0..3, ... These helpers undo the
flattening and build the same views for the uncropped evaluation images.
"""

from __future__ import annotations

import torch

#: SSKD's number of views: the normal image and its three rotations
ROTATE4_VIEWS = 4


def split_views(rows: torch.Tensor, views: int, what: str) -> torch.Tensor:
    """Image-major (B*V, ...) rows -> (B, V, ...), so ``out[i, v]`` is image i, view v.

    Args:
        rows: features of every view, image-major.
        views: V, the number of views per image.
        what: the tensor's name, for the error message.
    """
    if views < 2:
        raise ValueError(f"{what}: SSKD needs multi-view batches (data.views=rotate4), got {views} view(s) per image")
    if rows.dim() < 1 or rows.shape[0] % views != 0:
        raise ValueError(
            f"{what}: {tuple(rows.shape)} rows cannot be split into images of {views} views "
            "(expected image-major B*V rows)"
        )
    return rows.reshape(rows.shape[0] // views, views, *rows.shape[1:])


def rotate4_views(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) square images -> (B, 4, C, H, W): rotations by 0, 90, 180 and 270 degrees.

    Counter-clockwise like ``torch.rot90(x, k, dims=(-2, -1))`` and like the
    training views of ``data.views=rotate4``; evaluation images are not
    cropped, so the rotations are exact.
    """
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotate4_views expects square images (B, C, H, W), got shape {tuple(images.shape)}")
    return torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(ROTATE4_VIEWS)], dim=1)
