"""A teacher cache replays the exact images the teacher saw and returns what the teacher said about them."""

from __future__ import annotations

import json

import torch

from kdlab.cache import CachedTeacherStream, TeacherCache, build_cache_from_config
from kdlab.engine.trainer import Trainer

from perf_helpers import cache_path, config, data_and_teacher, first_batches, live_logits


def test_cached_logits_equal_a_live_teacher_forward_on_the_replayed_images(tiny):
    cfg = config(tiny)
    cache, built = build_cache_from_config(cfg, cache_path(tiny), epochs=2, progress=False)
    assert built and cache.layout.top_k == 0  # 3 classes: full logits by default
    data, teacher = data_and_teacher(cfg)
    stream = CachedTeacherStream(cache, data.train, torch.device("cpu"))
    for epoch in (0, 1):
        for batch in first_batches(stream, epoch, 2):
            expected = live_logits(teacher, batch["image"])
            cached = batch["teacher_features"].logits
            assert cached.dtype == torch.float32 and cached.shape == expected.shape
            torch.testing.assert_close(cached, expected, rtol=2e-3, atol=2e-3)  # fp16 storage


def test_replay_equals_the_fast_stream_of_the_cache_seed_whatever_the_run_seed(tiny):
    cfg = config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=2, progress=False)
    cache_seed_data, _ = data_and_teacher(cfg)
    other_seed_data, _ = data_and_teacher(cfg, seed=7)  # a student run with another trainer.seed
    replay = CachedTeacherStream(cache, other_seed_data.train, torch.device("cpu"))
    for epoch in (0, 1):
        original = first_batches(cache_seed_data.train, epoch, 3)
        replayed = first_batches(replay, epoch, 3)
        for step, (a, b) in enumerate(zip(original, replayed)):
            assert torch.equal(a["index"], b["index"])
            assert torch.equal(a["target"], b["target"])
            assert torch.equal(a["image"], b["image"])
            for key, value in cache_seed_data.train.params_at(epoch, step).items():
                assert torch.equal(cache.params_at(epoch, step)[key], value), key
                assert cache.params_at(epoch, step)[key].dtype == value.dtype


def test_resuming_mid_epoch_replays_the_same_batches(tiny):
    cfg = config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, progress=False)
    data, _ = data_and_teacher(cfg)
    stream = CachedTeacherStream(cache, data.train, torch.device("cpu"))
    whole = list(stream.epoch(0))
    tail = list(stream.epoch(0, start_step=1))
    assert len(tail) == len(whole) - 1
    for a, b in zip(whole[1:], tail):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["teacher_features"].logits, b["teacher_features"].logits)


def test_cached_embeddings_equal_the_live_teacher_embedding(tiny):
    cfg = config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, fields=["embedding"], progress=False)
    data, teacher = data_and_teacher(cfg)
    stream = CachedTeacherStream(cache, data.train, torch.device("cpu"))
    batch = first_batches(stream, 0, 1)[0]
    with torch.no_grad():
        expected = teacher.forward_all(batch["image"]).embedding
    assert batch["teacher_features"].logits is None
    torch.testing.assert_close(batch["teacher_features"].embedding, expected, rtol=2e-3, atol=2e-3)


def _train_rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_from_the_cache_gives_the_losses_of_training_live(tiny):
    root = tiny["root"]
    live = Trainer(config(tiny, f"trainer.out_dir={root / 'live'}")).fit()
    cached_cfg = config(tiny, f"trainer.out_dir={root / 'cached'}", f"distill.teacher_cache={cache_path(tiny)}")
    cached = Trainer(cached_cfg).fit()
    assert live.completed and cached.completed
    assert TeacherCache(cache_path(tiny)).epochs == 2  # built on first use, for trainer.epochs
    for a, b in zip(_train_rows(live.out_dir), _train_rows(cached.out_dir)):
        for key in ("train_loss", "train_ce", "train_kd", "val_loss"):
            assert abs(a[key] - b[key]) <= 2e-3 * max(1.0, abs(a[key])), (key, a[key], b[key])


def test_each_ddp_rank_replays_its_columns_of_the_cached_global_batch(tiny):
    from kdlab.data import build_data

    cfg = config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, progress=False)
    whole = first_batches(CachedTeacherStream(cache, data_and_teacher(cfg)[0].train, torch.device("cpu")), 0, 1)[0]
    halves = []
    for rank in (0, 1):
        data = build_data(cfg.data, seed=cfg.trainer.seed, device="cpu", rank=rank, world_size=2)
        halves.append(first_batches(CachedTeacherStream(cache, data.train, torch.device("cpu")), 0, 1)[0])
    for key in ("index", "image", "target"):
        assert torch.equal(torch.cat([h[key] for h in halves]), whole[key]), key
    joined = torch.cat([h["teacher_features"].logits for h in halves])
    assert torch.equal(joined, whole["teacher_features"].logits)


def test_multi_view_batches_cache_one_row_per_view(tiny):
    cfg = config(tiny, "data.views=multi", "data.num_views=2")
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, fields=["embedding"], progress=False)
    data, teacher = data_and_teacher(cfg)
    batch = first_batches(CachedTeacherStream(cache, data.train, torch.device("cpu")), 0, 1)[0]
    images = batch["image"]
    assert images.shape[:2] == (16, 2) and batch["aug"]["dy"].shape == (16, 2)
    with torch.no_grad():
        expected = teacher.forward_all(images.flatten(0, 1)).embedding  # image-major, as the Distiller flattens
    torch.testing.assert_close(batch["teacher_features"].embedding, expected, rtol=2e-3, atol=2e-3)


def test_a_float32_cache_trains_bit_for_bit_like_the_live_teacher(tiny):
    from kdlab.engine.checkpoint import load_checkpoint_file

    root = tiny["root"]
    build_cache_from_config(config(tiny), cache_path(tiny), store_dtype="float32", progress=False)
    live = Trainer(config(tiny, f"trainer.out_dir={root / 'live'}")).fit()
    cached_cfg = config(tiny, f"trainer.out_dir={root / 'cached'}", f"distill.teacher_cache={cache_path(tiny)}")
    cached = Trainer(cached_cfg).fit()
    a = load_checkpoint_file(live.out_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint_file(cached.out_dir / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
