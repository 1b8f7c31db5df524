"""A teacher cache on the standard path (torchvision transforms in DataLoader workers, e.g. ImageNet).

The schedule stored per image is its sample index and its augmentation seed, under which the
workers run its transforms (here RandomResizedCrop + flip, which the fast path cannot do); a
student run replays them and must get exactly the images, and the outputs, the teacher had.
"""

from __future__ import annotations

import pytest
import torch

from kdlab.cache import CachedStandardTeacherStream, TeacherCache, TeacherCacheError, build_cache_from_config
from kdlab.data.standard import StandardTrainStream
from kdlab.engine.trainer import Trainer

from perf_helpers import cache_path, config, data_and_teacher, first_batches, live_logits

STANDARD = ("data.pipeline=standard", "data.augment=random_resized_crop")


def standard_config(tiny: dict, *extra: str):
    return config(tiny, *STANDARD, *extra)


def test_the_cache_stores_seeds_and_its_logits_equal_the_live_teacher_on_the_replayed_images(tiny):
    cfg = standard_config(tiny)
    cache, built = build_cache_from_config(cfg, cache_path(tiny), epochs=2, progress=False)
    assert built and cache.aug_dtypes == {"seed": "int64"}
    assert cache.key["augmentation"]["pipeline"] == "standard"
    data, teacher = data_and_teacher(cfg)
    assert isinstance(data.train, StandardTrainStream)
    stream = CachedStandardTeacherStream(cache, data.train, torch.device("cpu"))
    for epoch in (0, 1):
        for batch in first_batches(stream, epoch, 2):
            expected = live_logits(teacher, batch["image"])
            torch.testing.assert_close(batch["teacher_features"].logits, expected, rtol=2e-3, atol=2e-3)


def test_replay_equals_the_standard_stream_of_the_cache_seed_whatever_the_run_seed_and_workers(tiny):
    cfg = standard_config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, progress=False)
    cache_seed_data, _ = data_and_teacher(cfg)
    # another trainer.seed (data order and augmentation) and worker processes in the student run
    other, _ = data_and_teacher(standard_config(tiny, "data.num_workers=2"), seed=7)
    replay = CachedStandardTeacherStream(cache, other.train, torch.device("cpu"))
    original, replayed = first_batches(cache_seed_data.train, 0, 3), first_batches(replay, 0, 3)
    different_seed = first_batches(other.train, 0, 1)[0]
    assert not torch.equal(different_seed["image"], original[0]["image"])  # the run's own schedule differs
    for a, b in zip(original, replayed):
        for key in ("index", "target", "image"):
            assert torch.equal(a[key], b[key]), key
        assert torch.equal(a["aug"]["seed"], b["aug"]["seed"])


def test_resuming_mid_epoch_replays_the_same_batches(tiny):
    cfg = standard_config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, progress=False)
    stream = CachedStandardTeacherStream(cache, data_and_teacher(cfg)[0].train, torch.device("cpu"))
    whole, tail = list(stream.epoch(0)), list(stream.epoch(0, start_step=1))
    assert len(tail) == len(whole) - 1
    for a, b in zip(whole[1:], tail):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["teacher_features"].logits, b["teacher_features"].logits)


def test_a_float32_cache_trains_bit_for_bit_like_the_live_teacher(tiny):
    from kdlab.engine.checkpoint import load_checkpoint_file

    root = tiny["root"]
    build_cache_from_config(standard_config(tiny), cache_path(tiny), store_dtype="float32", progress=False)
    live = Trainer(standard_config(tiny, f"trainer.out_dir={root / 'live'}")).fit()
    cached = Trainer(standard_config(
        tiny, f"trainer.out_dir={root / 'cached'}", f"distill.teacher_cache={cache_path(tiny)}"
    )).fit()
    a = load_checkpoint_file(live.out_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint_file(cached.out_dir / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_changed_augmentation_code_is_caught_by_the_checksums(tiny, monkeypatch):
    cfg = standard_config(tiny)
    cache, _ = build_cache_from_config(cfg, cache_path(tiny), epochs=1, progress=False)
    data, _ = data_and_teacher(cfg)
    transform = data.train.dataset.transform
    monkeypatch.setattr(data.train.dataset, "transform", lambda image: transform(image).flip(-1))
    with pytest.raises(TeacherCacheError, match="differs from the image the teacher saw"):
        first_batches(CachedStandardTeacherStream(cache, data.train, torch.device("cpu")), 0, 1)


def test_a_fast_path_cache_is_refused_by_a_standard_path_run(tiny):
    build_cache_from_config(config(tiny), cache_path(tiny), epochs=1, progress=False)
    with pytest.raises(TeacherCacheError, match="augmentation.pipeline: cache has 'fast', this run has 'standard'"):
        Trainer(standard_config(tiny, f"trainer.out_dir={tiny['root'] / 'run'}",
                                f"distill.teacher_cache={cache_path(tiny)}"))
    data, _ = data_and_teacher(standard_config(tiny))
    with pytest.raises(TeacherCacheError, match="built on the fast data path"):
        CachedStandardTeacherStream(TeacherCache(cache_path(tiny)), data.train, torch.device("cpu"))
