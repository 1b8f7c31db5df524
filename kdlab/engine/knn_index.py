"""The teacher-kNN index of the training set, for CoSS's neighbour batches (``data.sampler=knn``).

``kdlab knn-index CONFIG`` embeds every training image with the teacher (eval
transform, no augmentation), L2-normalises the embeddings and stores, for each
sample, its K most cosine-similar other samples, nearest first. The file is a
plain dict readable with ``torch.load(..., weights_only=True)``::

    {"neighbours": int32/int64 (N, K), "similarities": float16 (N, K),
     "teacher": teacher fingerprint, "dataset": DataBundle.fingerprint, "k": K, "num_samples": N}

The data layer reads ``neighbours`` only; :func:`check_knn_index` refuses an
index built for another teacher or another training set.
"""

from __future__ import annotations

import dataclasses
import hashlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from kdlab.checkpoint_io import CheckpointError, describe_object, torch_load_checked
from kdlab.config import Config, ConfigError
from kdlab.engine.checkpoint import file_sha256

#: default number of neighbours stored per sample (CoSS's ImageNet setting)
DEFAULT_K = 384
#: bytes of the (chunk, N) similarity block searched at once
DEFAULT_CHUNK_BYTES = 256 * 2**20


class KnnIndexError(ConfigError):
    """A kNN index file is missing, unreadable or was built for another teacher or dataset."""


@dataclasses.dataclass
class KnnIndexInfo:
    """What :func:`build_knn_index` wrote."""

    path: Path
    num_samples: int
    k: int
    teacher: str
    dataset: str


# ----------------------------------------------------------------- fingerprints
def teacher_fingerprint(name: str, checkpoint: str | Path) -> str:
    """Identity of a teacher: sha256 of ``name`` and the sha256 of its weights file."""
    return hashlib.sha256(f"{name}|{file_sha256(checkpoint)}".encode()).hexdigest()


def config_teacher_fingerprint(cfg: Config) -> str:
    """:func:`teacher_fingerprint` of the config's teacher (a run folder resolves to its checkpoint)."""
    from kdlab.engine.builders import resolve_teacher_source

    name, checkpoint, _, _ = resolve_teacher_source(cfg)
    return teacher_fingerprint(name, checkpoint)  # type: ignore[arg-type]


def default_index_path(cfg: Config, teacher_fp: str, data_fp: str, k: int) -> Path:
    """``data.knn_index`` when the config names one, else ``<out_dir>/knn_index_<teacher>_<data>_k<K>.pt``."""
    if cfg.data.knn_index:
        return Path(cfg.data.knn_index)
    return Path(cfg.trainer.out_dir) / f"knn_index_{teacher_fp[:8]}_{data_fp[:8]}_k{k}.pt"


# ----------------------------------------------------------------- progress
class RowProgress:
    """Rows done out of a total: a tqdm bar on a terminal, a line per tenth otherwise, nothing for ``none``."""

    def __init__(self, mode: str, total: int, description: str) -> None:
        from kdlab.engine.progress import use_bar

        self.mode, self.total, self.description = mode, total, description
        self.done = 0
        self._next_line = 0.1
        self._bar: Any = None
        if mode != "none" and use_bar(mode):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit="img", leave=False, dynamic_ncols=True)

    def advance(self, rows: int) -> None:
        self.done += rows
        if self._bar is not None:
            self._bar.update(rows)
        elif self.mode != "none" and self.total and self.done / self.total >= self._next_line:
            print(f"{self.description} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%)", flush=True)
            while self._next_line <= self.done / self.total:
                self._next_line += 0.1

    def __enter__(self) -> "RowProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()


# ----------------------------------------------------------------- the search
def chunk_rows(num_samples: int, element_bytes: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Query rows per chunk so one (rows, N) similarity block stays within ``chunk_bytes``."""
    return max(1, min(num_samples, chunk_bytes // max(1, num_samples * element_bytes)))


@torch.no_grad()
def nearest_neighbours(
    embeddings: torch.Tensor,
    k: int,
    *,
    chunk_size: Optional[int] = None,
    on_chunk: Optional[Callable[[int], None]] = None,
    normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of every row among the other rows, nearest first.

    Args:
        embeddings: (N, D); rows are L2-normalised here. Computed on their device and
            in their dtype (pass float16 on a GPU to halve memory; float32 elsewhere).
        k: neighbours per row, 1 <= k <= N - 1.
        chunk_size: query rows per step; default keeps each (chunk, N) block near 256 MiB.
        on_chunk: called with the number of rows finished after each chunk (progress).
        normalized: the rows are already unit vectors (skips a normalised copy of the whole matrix).

    Returns:
        ``(indices int64 (N, k), similarities float32 (N, k))`` on the CPU, sorted by decreasing similarity.
        A row never lists itself (excluded by index, so exact duplicates still count as neighbours).
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    n = embeddings.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1:
        raise ValueError(
            f"k must be an int in [1, N-1] = [1, {n - 1}] for embeddings {tuple(embeddings.shape)}, got {k!r}"
        )
    if chunk_size is None:
        chunk_size = chunk_rows(n, embeddings.element_size())
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    x = embeddings if normalized else F.normalize(embeddings, dim=1)
    # (N, k) results can outgrow the device next to the embeddings (ImageNet: 1.28M x 384): kept on the CPU
    indices = torch.empty(n, k, dtype=torch.long)
    similarities = torch.empty(n, k, dtype=torch.float32)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = x[start:stop] @ x.T
        rows = torch.arange(stop - start, device=x.device)
        sims[rows, rows + start] = float("-inf")
        top = sims.topk(k, dim=1, largest=True, sorted=True)
        indices[start:stop] = top.indices.cpu()
        similarities[start:stop] = top.values.float().cpu()
        if on_chunk is not None:
            on_chunk(stop - start)
    return indices, similarities


# ----------------------------------------------------------------- embedding
@torch.no_grad()
def embed_split(
    model: torch.nn.Module,
    batches: Any,
    num_samples: int,
    *,
    dtype: torch.dtype = torch.float32,
    autocast: Optional[Any] = None,
    on_batch: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """L2-normalised embeddings (N, D) of an evaluation stream, row i = sample index i, on the model's device."""
    was_training = model.training
    model.eval()
    out: Optional[torch.Tensor] = None
    seen = torch.zeros(num_samples, dtype=torch.bool)
    try:
        for batch in batches:
            images = batch["image"]
            if images.dim() == 5:
                images = images[:, 0]
            with autocast if autocast is not None else nullcontext():
                embedding = model.forward_all(images).embedding
            embedding = F.normalize(embedding.float(), dim=1).to(dtype)
            if out is None:
                out = torch.zeros(num_samples, embedding.shape[1], dtype=dtype, device=embedding.device)
            index = batch["index"].to(embedding.device)
            out[index] = embedding
            seen[index.cpu()] = True
            if on_batch is not None:
                on_batch(int(images.shape[0]))
    finally:
        model.train(was_training)
    if out is None or not bool(seen.all()):
        missing = int((~seen).sum())
        raise KnnIndexError(f"the training stream did not deliver {missing} of {num_samples} samples")
    return out


# ----------------------------------------------------------------- the file
def check_index_output(cfg: Config, out: Optional[str | Path] = None) -> None:
    """Refuse, before any embedding, an index path (``out``, else ``data.knn_index``) that is not a regular
    file or a new path (:class:`~kdlab.checkpoint_io.OutputPathError`); the default name's folder must be
    a folder or a new path."""
    from kdlab.checkpoint_io import check_output_file, check_output_folder

    if out is not None:
        check_output_file(out, "--out")
    elif cfg.data.knn_index:
        check_output_file(cfg.data.knn_index, "data.knn_index")
    elif cfg.trainer.out_dir:
        check_output_folder(cfg.trainer.out_dir, "trainer.out_dir")


def build_knn_index(
    cfg: Config,
    *,
    k: int = DEFAULT_K,
    out: Optional[str | Path] = None,
    chunk_size: Optional[int] = None,
    unsafe_load: bool = False,
) -> KnnIndexInfo:
    """Embed the training set with the config's teacher and write its kNN index (atomically).

    ``k`` is clipped to N - 1. The index goes to ``out``, else to :func:`default_index_path`.
    ``unsafe_load`` allows a teacher checkpoint that needs full unpickling (trusted files only).
    """
    from kdlab.engine import builders
    from kdlab.engine.checkpoint import atomic_save
    from kdlab.engine.progress import say
    from kdlab.engine.report_eval import embedding_data

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KnnIndexError(f"--k must be an int >= 1, got {k!r}")
    if chunk_size is not None and chunk_size < 1:
        raise KnnIndexError(f"--chunk-size must be >= 1, got {chunk_size}")
    if cfg.teacher.name is None and cfg.teacher.checkpoint is None:
        raise ConfigError("knn-index embeds the training set with the teacher: set teacher.name and teacher.checkpoint")
    check_index_output(cfg, out)
    mode = cfg.trainer.progress
    device = builders.resolve_device(cfg.trainer.device)
    # the index does not exist yet: read the training set without the knn sampler
    data = embedding_data(cfg, device, progress=mode != "none")
    teacher_fp = config_teacher_fingerprint(cfg)
    teacher = builders.build_teacher(
        cfg, data.num_classes, data.in_chans, data.mean, data.std, unsafe_load=unsafe_load
    )
    if teacher is None:  # unreachable after the check above; keeps the type checker honest
        raise ConfigError("knn-index needs a teacher")
    teacher.to(device)
    n = data.train_size
    if n < 2:
        raise ConfigError(f"the training set has {n} sample(s); a kNN index needs at least 2")
    k_used = min(k, n - 1)
    dtype = torch.float16 if device.type == "cuda" else torch.float32

    with RowProgress(mode, n, "knn-index: embed") as bar:
        embeddings = embed_split(
            teacher, data.train_eval, n, dtype=dtype, autocast=builders.autocast_for(cfg, device), on_batch=bar.advance
        )
    say(mode, f"knn-index: embedded {n} training samples ({embeddings.shape[1]} dims); searching the top {k_used}")
    with RowProgress(mode, n, "knn-index: search") as bar:
        indices, similarities = nearest_neighbours(
            embeddings, k_used, chunk_size=chunk_size, on_chunk=bar.advance, normalized=True
        )
    index_dtype = torch.int32 if n < 2**31 else torch.int64
    path = Path(out) if out is not None else default_index_path(cfg, teacher_fp, data.fingerprint, k_used)
    payload = {
        "neighbours": indices.to(device="cpu", dtype=index_dtype),
        "similarities": similarities.to(device="cpu", dtype=torch.float16),
        "teacher": teacher_fp,
        "dataset": data.fingerprint,
        "k": k_used,
        "num_samples": n,
    }
    named = "--out" if out is not None else "data.knn_index" if cfg.data.knn_index else "the kNN index"
    atomic_save(payload, path, what=named)
    say(mode, f"knn-index: wrote {path} ({n} x {k_used})")
    return KnnIndexInfo(path=path, num_samples=n, k=k_used, teacher=teacher_fp, dataset=data.fingerprint)


def check_knn_index(path: str | Path, teacher_fp: str, data_fp: str) -> dict[str, Any]:
    """Read an index and refuse it unless it was built for this teacher and this training set.

    Returns the file's contents. Raises :class:`KnnIndexError` naming the file and what differs.
    """
    path = Path(path)
    if not path.exists():
        raise KnnIndexError(f"data.knn_index={path}: file not found (build it with `kdlab knn-index CONFIG`)")
    try:
        payload = torch_load_checked(path, what=f"data.knn_index={path}: the kNN index")
    except CheckpointError as err:
        raise KnnIndexError(str(err)) from None
    required = ("neighbours", "teacher", "dataset")
    missing = [key for key in required if not isinstance(payload, dict) or key not in payload]
    if missing:
        holds = "" if isinstance(payload, dict) else f"; it holds {describe_object(payload)}"
        raise KnnIndexError(f"data.knn_index={path}: not a kdlab kNN index (missing {', '.join(missing)}{holds})")
    neighbours = payload["neighbours"]
    if not isinstance(neighbours, torch.Tensor) or neighbours.ndim != 2 or neighbours.is_floating_point():
        shape = f"{neighbours.dtype} {tuple(neighbours.shape)}" if isinstance(neighbours, torch.Tensor) else \
            describe_object(neighbours)
        raise KnnIndexError(f"data.knn_index={path}: 'neighbours' must be an (N, K) integer tensor, got {shape}")
    stale = []
    if payload["teacher"] != teacher_fp:
        stale.append(f"teacher {str(payload['teacher'])[:12]} != current {teacher_fp[:12]}")
    if payload["dataset"] != data_fp:
        stale.append(f"dataset {str(payload['dataset'])[:12]} != current {data_fp[:12]}")
    if stale:
        raise KnnIndexError(
            f"data.knn_index={path} is stale ({'; '.join(stale)}): rebuild it with `kdlab knn-index CONFIG`"
        )
    return payload


def verify_knn_index(cfg: Config, data_fingerprint: str) -> None:
    """For ``data.sampler=knn``: refuse a stale ``data.knn_index`` (call after build_data, before training)."""
    if cfg.data.sampler != "knn" or not cfg.data.knn_index:
        return
    check_knn_index(cfg.data.knn_index, config_teacher_fingerprint(cfg), data_fingerprint)
