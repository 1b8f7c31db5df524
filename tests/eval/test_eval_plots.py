"""plot_embedding_2d writes a real PNG for both projection methods."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.eval import plot_embedding_2d

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _embeddings(n: int = 24):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(n // 3)
    teacher = torch.randn(n, 6, generator=g) + 3 * torch.nn.functional.one_hot(labels, 6).float()
    student = torch.randn(n, 4, generator=g)
    return {"teacher": teacher, "student": student}, labels


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_plot_writes_png(tmp_path: Path, method: str) -> None:
    embeddings, labels = _embeddings()
    out = plot_embedding_2d(embeddings, labels, tmp_path / "sub" / f"{method}.png", method=method, max_points=15)
    assert out == tmp_path / "sub" / f"{method}.png"
    data = out.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_plot_errors(tmp_path: Path) -> None:
    embeddings, labels = _embeddings()
    with pytest.raises(ValueError, match="method"):
        plot_embedding_2d(embeddings, labels, tmp_path / "x.png", method="umap")
    with pytest.raises(ValueError, match=r"embeddings\['teacher'\] has shape \(24, 6\) but labels has 23"):
        plot_embedding_2d(embeddings, labels[:23], tmp_path / "x.png", method="pca")
    with pytest.raises(ValueError, match="empty"):
        plot_embedding_2d({}, labels, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
