"""A teacher cache refuses, with a message naming what differs, to serve a run it was not built for."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdlab.cache import (
    CachedTeacherStream,
    TeacherCache,
    TeacherCacheError,
    TeacherCacheMismatchError,
    build_cache_from_config,
)
from kdlab.cli.main import main
from kdlab.engine.trainer import Trainer
from perf_helpers import cache_path, config, data_and_teacher, first_batches, write_teacher


@pytest.fixture
def built(tiny):
    """A 2-epoch cache of the tiny KD setup at distill.teacher_cache."""
    build_cache_from_config(config(tiny), cache_path(tiny), epochs=2, progress=False)
    return tiny


def run_with_cache(tiny, *extra: str) -> Trainer:
    return Trainer(config(tiny, f"trainer.out_dir={tiny['root'] / 'run'}", f"distill.teacher_cache={cache_path(tiny)}",
                          *extra))


def test_another_teacher_checkpoint_is_refused_naming_the_hash(built):
    other = write_teacher(built["root"] / "other-teacher.pt", seed=1)
    with pytest.raises(TeacherCacheMismatchError, match="teacher.checkpoint_sha256"):
        run_with_cache(built, f"teacher.checkpoint={other}")


def test_another_augmentation_is_refused_naming_it(built):
    with pytest.raises(TeacherCacheMismatchError, match=r"augmentation.crop_padding: cache has 1, this run has 2"):
        run_with_cache(built, "data.crop_padding=2")


def test_another_dataset_subset_is_refused_naming_the_fingerprint(built):
    with pytest.raises(TeacherCacheMismatchError, match=r"data.fingerprint"):
        run_with_cache(built, "data.subset=40")


def test_another_run_seed_is_accepted_and_follows_the_cache_schedule(built):
    trainer = run_with_cache(built, "trainer.seed=5")
    assert trainer.data.train.seed == 0  # the cache's seed decides the data order and augmentation


def test_more_epochs_than_cached_is_an_error_naming_both_numbers(built):
    with pytest.raises(TeacherCacheError, match=r"trainer.epochs=3 .* only 2 epoch"):
        run_with_cache(built, "trainer.epochs=3")


def test_fewer_epochs_than_cached_is_fine(built):
    result = run_with_cache(built, "trainer.epochs=1").fit()
    assert result.completed


def test_a_term_that_needs_feature_maps_is_refused_by_name(built):
    with pytest.raises(TeacherCacheError, match=r"loss term 'fitnet'.*needs a live teacher"):
        run_with_cache(built, "distill.terms=[{name: ce}, {name: fitnet, weight: 1.0}]")


def test_an_output_the_cache_lacks_is_named_with_the_term(built):
    with pytest.raises(TeacherCacheError, match=r"needs its embedding \(for pkt\)"):
        run_with_cache(built, "distill.terms=[{name: ce}, {name: pkt, weight: 1.0}]")


def test_an_interrupted_build_is_not_taken_for_a_cache(tiny):
    folder = cache_path(tiny)
    folder.mkdir()
    (folder / "index.npy").write_bytes(b"partial")
    with pytest.raises(TeacherCacheError, match="not a finished teacher cache"):
        TeacherCache(folder)


def test_a_failed_build_leaves_nothing_behind(tiny, monkeypatch):
    import kdlab.cache.build as build_module

    def broken(*args, **kwargs):
        raise RuntimeError("teacher exploded")

    monkeypatch.setattr(build_module, "_teacher_outputs", broken)
    with pytest.raises(RuntimeError, match="teacher exploded"):
        build_cache_from_config(config(tiny), cache_path(tiny), epochs=1, progress=False)
    assert not cache_path(tiny).exists()
    assert not [p for p in tiny["root"].iterdir() if p.name.startswith(".cache")]


def test_tampered_augmentation_parameters_fail_the_replay_check(built):
    flips = np.load(cache_path(built) / "aug_flip.npy", mmap_mode="r+")
    flips[0, 0] = ~flips[0, 0]  # the student would now see mirrored images
    flips.flush()
    del flips
    data, _ = data_and_teacher(config(built))
    stream = CachedTeacherStream(TeacherCache(cache_path(built)), data.train, torch.device("cpu"))
    with pytest.raises(TeacherCacheError, match="differs from the image the teacher saw"):
        first_batches(stream, 0, 1)


def test_cli_refuses_a_stale_cache_with_exit_code_2(built, tmp_path, capsys):
    config_file = tmp_path / "kd.yaml"
    config_file.write_text(json.dumps({}))  # an empty config: everything comes from the overrides
    overrides = [*built["overrides"], "data.crop_padding=2"]
    args = ["cache-teacher", str(config_file), *overrides, "--out", str(cache_path(built))]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "augmentation.crop_padding" in err and "--force" in err


def test_cli_reuses_a_fitting_cache_and_rebuilds_with_force(built, tmp_path, capsys):
    config_file = tmp_path / "kd.yaml"
    config_file.write_text("{}")
    base = ["cache-teacher", str(config_file), *built["overrides"], "--out", str(cache_path(built)), "--json"]
    assert main(base + ["--epochs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["built"] is False
    assert main(base + ["--epochs", "3", "--force"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["built"] is True and summary["epochs"] == 3
