"""Teacher-kNN index: the search, the file, staleness, and the neighbour batches built from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kdlab.cli.main import main
from kdlab.engine.knn_index import (
    KnnIndexError,
    build_knn_index,
    check_knn_index,
    config_teacher_fingerprint,
    nearest_neighbours,
    verify_knn_index,
)


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def brute_force(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.normalize(x.double(), dim=1)
    sims = x @ x.T
    sims.fill_diagonal_(float("-inf"))
    top = sims.topk(k, dim=1)
    return top.indices, top.values


# ---------------------------------------------------------------- the search
@pytest.mark.parametrize("chunk_size", [1, 7, 50, None])
def test_chunked_search_equals_brute_force(chunk_size):
    torch.manual_seed(0)
    x = torch.randn(50, 6) * torch.rand(50, 1) * 3  # scales differ: only directions count
    indices, sims = nearest_neighbours(x, 9, chunk_size=chunk_size)
    ref_indices, ref_sims = brute_force(x, 9)
    assert indices.dtype == torch.long and indices.shape == (50, 9)
    assert torch.equal(indices, ref_indices)
    assert torch.allclose(sims.double(), ref_sims, atol=1e-5)


def test_neighbours_exclude_self_and_are_sorted_nearest_first():
    torch.manual_seed(1)
    x = torch.randn(40, 5)
    x[7] = x[3] * 2.0  # an exact duplicate direction still counts as a neighbour
    indices, sims = nearest_neighbours(x, 39, chunk_size=6)
    assert not (indices == torch.arange(40)[:, None]).any()
    assert all(sorted(row.tolist()) == [j for j in range(40) if j != i] for i, row in enumerate(indices))
    assert (sims[:, :-1] >= sims[:, 1:]).all()
    assert indices[3, 0] == 7 and indices[7, 0] == 3 and torch.allclose(sims[3, 0], torch.tensor(1.0))


@pytest.mark.parametrize("k", [0, 40, 2.0])
def test_search_rejects_k_outside_one_to_n_minus_one(k):
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(torch.randn(40, 3), k)


def test_search_reports_progress_per_chunk():
    done = []
    nearest_neighbours(torch.randn(10, 3), 2, chunk_size=4, on_chunk=done.append)
    assert done == [4, 4, 2]


# ---------------------------------------------------------------- the file
@pytest.fixture
def index_cfg(digits_cfg, random_teacher, tmp_path: Path):
    return digits_cfg(*random_teacher, "teacher.embedding_only=true", f"trainer.out_dir={tmp_path / 'run'}")


def test_cli_writes_the_index_with_fingerprints(index_cfg, digits_cfg, random_teacher, tmp_path: Path):
    from kdlab.engine.report_eval import embedding_data

    out = tmp_path / "idx.pt"
    overrides = [*random_teacher, "teacher.embedding_only=true", "data.name=digits", "data.subset=null", "trainer.device=cpu",
                 "trainer.progress=none", "data.num_workers=0"]
    assert main(["knn-index", str(CONFIGS / "demo" / "coss.yaml"), *overrides, "--k", "40", "--out", str(out)]) == 0
    payload = torch.load(out, map_location="cpu", weights_only=True)
    data = embedding_data(index_cfg, torch.device("cpu"))
    n = data.train_size
    assert payload["k"] == 40 and payload["num_samples"] == n
    assert payload["neighbours"].dtype == torch.int32 and payload["neighbours"].shape == (n, 40)
    assert payload["similarities"].dtype == torch.float16 and payload["similarities"].shape == (n, 40)
    assert payload["dataset"] == data.fingerprint
    assert payload["teacher"] == config_teacher_fingerprint(index_cfg)
    assert not (payload["neighbours"] == torch.arange(n)[:, None]).any()
    sims = payload["similarities"].float()
    assert (sims[:, :-1] >= sims[:, 1:]).all()

    # the stored neighbours are the brute-force neighbours of the teacher's normalised embeddings
    from kdlab.engine import builders
    from kdlab.engine.knn_index import embed_split

    teacher = builders.build_teacher(index_cfg, data.num_classes, data.in_chans, data.mean, data.std)
    embeddings = embed_split(teacher, data.train_eval, n)
    _, ref_sims = brute_force(embeddings, 40)
    assert torch.allclose(sims.double(), ref_sims, atol=2e-3)  # fp16 storage
    chosen = (embeddings[payload["neighbours"].long()] * embeddings[:, None, :]).sum(-1)
    assert torch.allclose(chosen.double(), ref_sims, atol=1e-5)


def test_k_is_clipped_and_the_default_path_is_keyed_by_fingerprints(digits_cfg, random_teacher, tmp_path: Path):
    cfg = digits_cfg(*random_teacher, "data.subset=30", f"trainer.out_dir={tmp_path}")
    info = build_knn_index(cfg, k=384)
    assert info.k == 29 and info.num_samples == 30
    assert info.path == tmp_path / f"knn_index_{info.teacher[:8]}_{info.dataset[:8]}_k29.pt"
    # data.knn_index, when set, is where the index goes
    named = tmp_path / "named.pt"
    cfg = digits_cfg(*random_teacher, "data.subset=30", f"data.knn_index={named}", f"trainer.out_dir={tmp_path}")
    assert build_knn_index(cfg, k=5).path == named and named.is_file()


def test_a_stale_index_is_refused(digits_cfg, random_teacher, tmp_path: Path):
    path = tmp_path / "idx.pt"
    cfg = digits_cfg(*random_teacher, "data.subset=40", f"data.knn_index={path}", "data.sampler=knn",
                     "data.knn_anchors=4", "data.knn_neighbours=3", "data.knn_pool=5", "data.batch_size=16")
    info = build_knn_index(cfg, k=8)
    check_knn_index(path, info.teacher, info.dataset)
    verify_knn_index(cfg, info.dataset)
    with pytest.raises(KnnIndexError, match="stale.*dataset"):
        check_knn_index(path, info.teacher, "0" * 32)
    with pytest.raises(KnnIndexError, match="stale.*teacher"):
        check_knn_index(path, "f" * 64, info.dataset)
    other_teacher = tmp_path / "other.pt"
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in
                torch.load(random_teacher[1].split("=", 1)[1], weights_only=True).items()}, other_teacher)
    retrained = digits_cfg("teacher.name=resnet8", f"teacher.checkpoint={other_teacher}", "data.subset=40",
                           f"data.knn_index={path}", "data.sampler=knn")
    with pytest.raises(KnnIndexError, match="rebuild it with `kdlab knn-index"):
        verify_knn_index(retrained, info.dataset)
    with pytest.raises(KnnIndexError, match="not found"):
        check_knn_index(tmp_path / "missing.pt", info.teacher, info.dataset)


def test_cli_refuses_a_config_without_teacher(tmp_path: Path, capsys):
    config = str(CONFIGS / "demo" / "student.yaml")
    code = main(["knn-index", config, "trainer.device=cpu", f"trainer.out_dir={tmp_path}"])
    assert code == 2 and "teacher" in capsys.readouterr().err


# ---------------------------------------------------------------- neighbour batches
def test_neighbour_batches_through_build_data(digits_cfg, random_teacher, tmp_path: Path):
    from kdlab.data import build_data

    path = tmp_path / "idx.pt"
    cfg = digits_cfg(*random_teacher, f"data.knn_index={path}", "data.sampler=knn", "data.knn_anchors=4",
                     "data.knn_neighbours=15", "data.knn_pool=31", "data.batch_size=64")
    build_knn_index(cfg, k=40)
    neighbours = torch.load(path, weights_only=True)["neighbours"].long()
    data = build_data(cfg.data, seed=0)
    assert data.train.steps_per_epoch == data.train_size // 4
    anchors_seen = []
    for step, batch in enumerate(data.train.epoch(0)):
        groups = batch["index"].view(4, 16)
        for group in groups.tolist():
            anchor, drawn = group[0], group[1:]
            assert len(set(drawn)) == 15 and anchor not in drawn
            assert set(drawn) <= set(neighbours[anchor, :31].tolist())
            anchors_seen.append(anchor)
        if step == 20:
            break
    assert len(set(anchors_seen)) == len(anchors_seen)  # anchors are a permutation, no repeats within an epoch
