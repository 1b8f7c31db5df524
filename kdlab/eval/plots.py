"""Side-by-side 2-D projections of embeddings, coloured by class, saved as a PNG.

matplotlib and scikit-learn are imported inside the function: importing :mod:`kdlab.eval`
stays cheap, and the figure is drawn on an explicit Agg canvas so the caller's global
matplotlib backend and pyplot state are never touched.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from kdlab.eval._checks import require_2d, require_positive_int

PROJECTION_METHODS = ("tsne", "pca")


def _labels_to_numpy(labels: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {array.shape}")
    return array


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Project (n, D) points to (n, 2) with PCA or t-SNE."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    # t-SNE requires perplexity < n_samples; the usual 30 is shrunk for tiny inputs.
    perplexity = min(30.0, max(1.0, (x.shape[0] - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(x)


def plot_embedding_2d(
    embeddings: Mapping[str, torch.Tensor],
    labels: torch.Tensor | np.ndarray | Sequence[int],
    path: str | Path,
    method: str = "tsne",
    seed: int = 0,
    max_points: int = 2000,
) -> Path:
    """Project each named embedding to 2-D and draw them side by side, coloured by label.

    Args:
        embeddings: e.g. ``{"teacher": (N, Dt), "student": (N, Ds)}``; all share the N samples.
        labels: (N,) class labels used for colours.
        path: output PNG path (parent folders are created).
        method: ``"tsne"`` (scikit-learn t-SNE) or ``"pca"``.
        seed: fixes the subsample and the projection.
        max_points: at most this many samples are drawn (the same subset for every panel).

    Returns:
        The path written, as a :class:`~pathlib.Path`.
    """
    if method not in PROJECTION_METHODS:
        raise ValueError(f"method must be one of {PROJECTION_METHODS}, got {method!r}")
    if not embeddings:
        raise ValueError("embeddings must contain at least one named (N, D) tensor, got an empty mapping")
    require_positive_int("max_points", max_points)
    label_array = _labels_to_numpy(labels)
    n = label_array.shape[0]
    for name, emb in embeddings.items():
        require_2d(f"embeddings[{name!r}]", emb)
        if emb.shape[0] != n:
            raise ValueError(
                f"embeddings[{name!r}] has shape {tuple(emb.shape)} but labels has {n} entries"
            )
        if emb.shape[1] < 2 or n < 3:
            raise ValueError(
                f"a 2-D projection needs at least 3 samples and 2 dims, got embeddings[{name!r}] "
                f"of shape {tuple(emb.shape)}"
            )

    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else np.arange(n)
    keep_t = torch.from_numpy(keep)
    shown_labels = label_array[keep]

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(embeddings), 5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(embeddings), squeeze=False)[0]
    cmap = "tab10" if len(np.unique(shown_labels)) <= 10 else "tab20"
    for axis, (name, emb) in zip(axes, embeddings.items()):
        points = emb.detach()[keep_t.to(emb.device)].to(torch.float64).cpu().numpy()
        xy = _project(points, method, seed)
        scatter = axis.scatter(xy[:, 0], xy[:, 1], c=shown_labels, cmap=cmap, s=6, alpha=0.8)
        axis.set_title(f"{name} ({method}, n={len(keep)})")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.colorbar(scatter, ax=list(axes), label="class")

    path = _regular_or_new(Path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    # temporary file + rename: an interrupted write leaves the previous figure, never half of one
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _regular_or_new(path: Path) -> Path:
    """``path`` when it is a regular file (a link to one counts) or does not exist; else ValueError naming it.

    A device, a named pipe or a folder at the plot path is never written to or replaced (kdlab.eval
    imports nothing of kdlab outside it, so this is not kdlab.checkpoint_io.check_output_file).
    """
    if not os.path.lexists(path) or path.is_file():
        return path
    try:
        mode = path.stat().st_mode
    except OSError:
        raise ValueError(f"plot path {path} is a symbolic link to nothing, not a regular file") from None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))
    what = next((name for test, name in kinds if test(mode)), "a special file")
    raise ValueError(f"plot path {path} is {what}, not a regular file")
