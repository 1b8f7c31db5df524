"""data.per_class (class-balanced training subsets) and data.label_noise (symmetric training-label noise)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import pytest
import torch

from kdlab.config import ConfigError, dump_yaml, from_dict, load_config
from kdlab.config.schema import DataConfig, LabelNoiseConfig
from kdlab.data import DataError, build_data, dataset_info, prepare_cache
from kdlab.data.cache import selection_digest
from kdlab.data.sources import open_source
from kdlab.data.training_set import LabelNoise, apply_label_noise, per_class_counts

PIPELINES = ["fast", "standard"]


def _cfg(make_cfg, pipeline="fast", **overrides):
    base = dict(name="synthetic", synthetic_train=100, synthetic_test=30, synthetic_classes=10, synthetic_size=8,
                batch_size=10, crop_padding=1, pipeline=pipeline)
    base.update(overrides)
    return make_cfg(**base)


def _noise(rate, seed=None):
    return LabelNoiseConfig(rate=rate, seed=seed)


def _targets(stream) -> torch.Tensor:
    return torch.cat([b["target"] for b in stream])


def _images(stream) -> torch.Tensor:
    return torch.cat([b["image"] for b in stream])


def _positions_in(full: torch.Tensor, part: torch.Tensor) -> list[int]:
    """Where each image of ``part`` is in ``full`` (the images of a whole training split, all distinct)."""
    return [int((full == image).flatten(1).all(1).nonzero()[0]) for image in part]


# ------------------------------------------------------------------ per_class
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_per_class_count_is_exact_balanced_and_seed_independent(make_cfg, pipeline):
    cfg = _cfg(make_cfg, pipeline, per_class=3)
    a, b = build_data(cfg, seed=0), build_data(cfg, seed=9)
    assert a.train_size == b.train_size == 30
    assert torch.bincount(_targets(a.train_eval), minlength=10).tolist() == [3] * 10
    assert a.fingerprint == b.fingerprint
    assert torch.equal(_images(a.train_eval), _images(b.train_eval))
    full = build_data(_cfg(make_cfg, pipeline), seed=0)
    where = _positions_in(_images(full.train_eval), _images(a.train_eval))
    assert where == sorted(where) and len(set(where)) == 30  # sorted positions of the dataset's training split
    assert a.fingerprint != full.fingerprint
    # every batch is made of selected samples with their labels
    for batch in a.train.epoch(0):
        assert torch.equal(batch["target"], a.train_targets[batch["index"]])


def test_per_class_fraction_rounds_halves_up_with_at_least_one():
    assert per_class_counts(0.25, [10, 10]) == [3, 3]  # 2.5 -> 3
    assert per_class_counts(0.5, [1, 3, 10, 0]) == [1, 2, 5, 0]  # 0.5 -> 1, 1.5 -> 2, an empty class keeps none
    assert per_class_counts(0.01, [7]) == [1]
    assert per_class_counts(1.0, [4, 9]) == [4, 9]
    assert per_class_counts(4, [5, 9]) == [4, 4]


def test_per_class_fraction_form(make_cfg):
    bundle = build_data(_cfg(make_cfg, per_class=0.25), seed=0)  # 10 images per class -> round(2.5) = 3
    assert torch.bincount(_targets(bundle.train_eval), minlength=10).tolist() == [3] * 10
    whole = build_data(_cfg(make_cfg, per_class=1.0), seed=0)
    default = build_data(_cfg(make_cfg), seed=0)
    # keeping every image is exactly the run without per_class
    assert whole.fingerprint == default.fingerprint
    assert torch.equal(_images(whole.train_eval), _images(default.train_eval))


def test_per_class_fraction_of_unbalanced_classes_keeps_the_proportions(tmp_path, make_cfg, datagen):
    root = tmp_path / "folder"
    datagen.write_imagefolder(root, train_per_class=4, eval_per_class=1, size=4)
    (root / "train" / "eel" / "000.png").unlink()  # eel: 3 images
    bundle = build_data(make_cfg(name="imagefolder", root=str(root), batch_size=2, per_class=0.5), seed=0)
    assert torch.bincount(_targets(bundle.train_eval), minlength=3).tolist() == [2, 2, 2]  # 2, 2, round(1.5)
    with pytest.raises(DataError, match=r"data.per_class=4 exceeds the 3 image\(s\) of class 'eel' \(label 2\)"):
        build_data(make_cfg(name="imagefolder", root=str(root), batch_size=2, per_class=4), seed=0)


def test_smaller_counts_are_subsets_of_larger_ones(make_cfg):
    full = _images(build_data(_cfg(make_cfg), seed=0).train_eval)
    two = set(_positions_in(full, _images(build_data(_cfg(make_cfg, per_class=2), seed=0).train_eval)))
    five = set(_positions_in(full, _images(build_data(_cfg(make_cfg, per_class=5), seed=0).train_eval)))
    assert len(two) == 20 and len(five) == 50 and two < five


def test_per_class_applies_to_the_images_of_the_subset(make_cfg):
    full = _images(build_data(_cfg(make_cfg), seed=0).train_eval)
    subset = build_data(_cfg(make_cfg, subset=60), seed=0)
    both = build_data(_cfg(make_cfg, subset=60, per_class=2), seed=0)
    assert both.train_size == 20
    assert torch.bincount(_targets(both.train_eval), minlength=10).tolist() == [2] * 10
    assert set(_positions_in(full, _images(both.train_eval))) <= set(_positions_in(full, _images(subset.train_eval)))
    counts = torch.bincount(_targets(subset.train_eval), minlength=10)
    fewest = int(counts.min())
    label = int(counts.argmin())
    with pytest.raises(DataError) as error:
        build_data(_cfg(make_cfg, subset=60, per_class=fewest + 1), seed=0)
    message = str(error.value)
    assert f"data.per_class={fewest + 1} exceeds the {fewest} image(s) of class 'class_{label}'" in message
    assert "data.subset=60" in message and "\n" not in message


def test_per_class_larger_than_a_class_names_key_class_and_count(make_cfg):
    with pytest.raises(DataError) as error:
        build_data(_cfg(make_cfg, per_class=11), seed=0)
    message = str(error.value)
    assert message.startswith("data.per_class=11 exceeds the 10 image(s) of class 'class_0' (label 0)")
    assert "10 classes have fewer than 11" in message and "every class has at least 10" in message


def test_per_class_decoded_cache_is_keyed_on_the_selection(imagefolder_dir, make_cfg, datagen, tmp_path):
    root, _ = imagefolder_dir
    for container in (root, datagen.zip_folder(root, tmp_path / "data.zip")):
        cfg = make_cfg(name="imagefolder", root=str(container), batch_size=2, per_class=2, pipeline="fast")
        report = prepare_cache(cfg, progress=False)
        assert report["splits"]["train"]["samples"] == 6 and report["splits"]["val"]["samples"] == 6
        bundle = build_data(cfg, seed=0)
        assert bundle.fingerprint == report["fingerprint"] and bundle.train_size == 6
        assert torch.bincount(_targets(bundle.train_eval), minlength=3).tolist() == [2, 2, 2]
        other = prepare_cache(dataclasses.replace(cfg, per_class=3), progress=False)
        assert other["splits"]["train"]["path"] != report["splits"]["train"]["path"]
        assert other["splits"]["train"]["samples"] == 9
        assert not other["splits"]["train"]["from_cache"]
        assert other["splits"]["val"]["path"] == report["splits"]["val"]["path"]  # evaluation: never subsampled


# ---------------------------------------------------------------- label noise
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_noise_changes_exactly_round_rate_n_labels_never_to_the_same_class(make_cfg, pipeline):
    clean = build_data(_cfg(make_cfg, pipeline), seed=0)
    noisy = build_data(_cfg(make_cfg, pipeline, label_noise=_noise(0.3, 4)), seed=0)
    true = _targets(clean.train_eval)
    changed = noisy.train_targets != true
    assert int(changed.sum()) == 30
    assert torch.equal(clean.train_targets, true)
    assert noisy.train_targets.min() >= 0 and noisy.train_targets.max() < 10
    # the training batches carry the noisy labels, evaluation streams the true ones
    for batch in noisy.train.epoch(1):
        assert torch.equal(batch["target"], noisy.train_targets[batch["index"]])
    assert torch.equal(_targets(noisy.train_eval), true)
    assert torch.equal(_targets(noisy.eval), _targets(clean.eval))
    assert torch.equal(_images(noisy.eval), _images(clean.eval))


def test_noise_rounds_halves_up_and_rate_zero_changes_nothing(make_cfg):
    labels = np.arange(10) % 3
    assert apply_label_noise(labels, 3, LabelNoise(0.25, 0)).changed == 3  # 2.5 -> 3
    assert apply_label_noise(labels, 3, LabelNoise(0.05, 0)).changed == 1  # 0.5 -> 1
    assert apply_label_noise(labels, 3, LabelNoise(0.04, 0)).changed == 0
    default = build_data(_cfg(make_cfg), seed=0)
    zero = build_data(_cfg(make_cfg, label_noise=_noise(0.0, 3)), seed=0)
    assert torch.equal(zero.train_targets, default.train_targets) and zero.fingerprint == default.fingerprint
    assert zero.notes == default.notes == []


def test_noise_is_uniform_over_the_other_classes():
    classes = 5
    labels = np.arange(20000) % classes
    result = apply_label_noise(labels, classes, LabelNoise(0.5, 0))
    moved = result.labels != labels
    assert int(moved.sum()) == 10000 and not np.any(result.labels[moved] == labels[moved])
    for c in range(classes):
        new = result.labels[moved & (labels == c)]
        share = np.bincount(new, minlength=classes) / new.size
        assert share[c] == 0
        assert np.all(np.abs(np.delete(share, c) - 0.25) < 0.04), share
    # the changed samples are spread over the classes too
    assert np.all(np.abs(np.bincount(labels[moved], minlength=classes) / 10000 - 0.2) < 0.03)


def test_noise_is_fixed_by_its_seed_and_independent_of_the_trainer_seed(make_cfg):
    cfg = _cfg(make_cfg, label_noise=_noise(0.3, 1))
    a, b = build_data(cfg, seed=0), build_data(cfg, seed=5)
    assert torch.equal(a.train_targets, b.train_targets) and a.fingerprint == b.fingerprint
    other = build_data(_cfg(make_cfg, label_noise=_noise(0.3, 2)), seed=0)
    assert not torch.equal(a.train_targets, other.train_targets)
    assert int((other.train_targets != _targets(other.train_eval)).sum()) == 30
    assert a.fingerprint != other.fingerprint
    default_seed = build_data(_cfg(make_cfg, label_noise=_noise(0.3)), seed=0)  # seed null: 0
    zero_seed = build_data(_cfg(make_cfg, label_noise=_noise(0.3, 0)), seed=0)
    assert torch.equal(default_seed.train_targets, zero_seed.train_targets)


def test_a_lower_rate_changes_a_subset_of_a_higher_rates_labels():
    labels = np.arange(1000) % 7
    low = apply_label_noise(labels, 7, LabelNoise(0.1, 3)).labels
    high = apply_label_noise(labels, 7, LabelNoise(0.4, 3)).labels
    moved_low = low != labels
    assert moved_low.sum() == 100 and (high != labels).sum() == 400
    assert np.array_equal(low[moved_low], high[moved_low])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_noise_count_is_logged_and_printed(make_cfg, pipeline, caplog, capsys):
    cfg = _cfg(make_cfg, pipeline, per_class=4, label_noise=_noise(0.25, 0))
    with caplog.at_level(logging.INFO, logger="kdlab.data"):
        bundle = build_data(cfg, seed=0, progress=True)
    line = ("data.label_noise: 10 of 40 training labels replaced by a different class (rate 0.25, seed 0); "
            "evaluation labels unchanged")
    per_class = ("data.per_class=4: 40 of 100 training images, 4 per class (10 classes); "
                 "evaluation uses the whole test split")
    assert bundle.notes == [per_class, line]
    assert line in caplog.messages and per_class in caplog.messages
    printed = capsys.readouterr().out.splitlines()
    assert line in printed and per_class in printed
    build_data(cfg, seed=0, progress=False)  # another rank, or trainer.progress=none: nothing printed
    assert capsys.readouterr().out == ""


def test_trainer_announces_the_noise_at_the_start(tmp_path, capsys):
    from kdlab.engine.trainer import Trainer

    cfg = load_config(None, [
        "data.name=synthetic", "data.synthetic_train=64", "data.synthetic_test=16", "data.synthetic_classes=4",
        "data.synthetic_size=8", "data.batch_size=16", "data.num_workers=0", "data.per_class=8",
        "data.label_noise={rate: 0.5, seed: 3}", "model.name=resnet8", "trainer.epochs=1",
        "trainer.progress=lines", "trainer.device=cpu", f"trainer.out_dir={tmp_path / 'run'}",
    ])
    result = Trainer(cfg).fit()
    assert result.completed
    out = capsys.readouterr().out
    assert "data.per_class=8: 32 of 64 training images, 8 per class (4 classes)" in out
    assert "data.label_noise: 16 of 32 training labels replaced by a different class (rate 0.5, seed 3)" in out


# --------------------------------------------- every source, views, DDP, caches
SOURCES = ["synthetic", "digits", "imagefolder", "zip", "cifar10", "cifar100"]


def _source_cfg(kind, make_cfg, tmp_path, datagen, **overrides):
    if kind in ("imagefolder", "zip"):
        root = tmp_path / "folder"
        datagen.write_imagefolder(root, train_per_class=6, eval_per_class=2, size=8)
        if kind == "zip":
            root = datagen.zip_folder(root, tmp_path / "data.zip")
        return make_cfg(name="imagefolder", root=str(root), batch_size=4, **overrides)
    if kind in ("cifar10", "cifar100"):
        datagen.write_cifar(tmp_path, kind, per_batch=40 if kind == "cifar10" else 200)
        return make_cfg(name=kind, root=str(tmp_path), batch_size=4, **overrides)
    if kind == "digits":
        return make_cfg(name="digits", batch_size=16, **overrides)
    return _cfg(make_cfg, **overrides)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("kind", SOURCES)
def test_every_source_and_pipeline(kind, pipeline, make_cfg, tmp_path, datagen):
    cfg = _source_cfg(kind, make_cfg, tmp_path, datagen, pipeline=pipeline, per_class=0.5,
                      label_noise=_noise(0.2, 0))
    source = open_source(cfg)
    sizes = np.bincount(source.train.labels, minlength=len(source.classes)).tolist()
    expected = per_class_counts(0.5, sizes)
    bundle = build_data(cfg, seed=0)
    true = _targets(bundle.train_eval)
    assert torch.bincount(true, minlength=len(source.classes)).tolist() == expected
    assert bundle.train_size == sum(expected)
    assert int((bundle.train_targets != true).sum()) == int(np.floor(0.2 * sum(expected) + 0.5))
    batch = next(iter(bundle.train.epoch(0)))
    assert torch.equal(batch["target"], bundle.train_targets[batch["index"]])
    assert torch.equal(_targets(bundle.eval), torch.as_tensor(source.eval.labels))  # whole, clean eval split


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_two_ranks_with_rotated_views_equal_one_process(make_cfg, pipeline):
    cfg = _cfg(make_cfg, pipeline, per_class=4, label_noise=_noise(0.3, 0), views="rotate4", batch_size=8)
    single = build_data(cfg, seed=2)
    ranks = [build_data(cfg, seed=2, rank=r, world_size=2) for r in range(2)]
    assert all(torch.equal(r.train_targets, single.train_targets) for r in ranks)
    assert all(r.fingerprint == single.fingerprint for r in ranks)
    batches = list(single.train.epoch(1))
    per_rank = [list(r.train.epoch(1)) for r in ranks]
    for step, batch in enumerate(batches):
        assert batch["image"].shape == (8, 4, 3, 8, 8) and batch["target"].shape == (8,)
        assert torch.equal(batch["target"], single.train_targets[batch["index"]])
        for key in ("image", "index", "target"):
            assert torch.equal(torch.cat([p[step][key] for p in per_rank]), batch[key])


def test_fingerprint_and_teacher_cache_key_name_the_training_data(make_cfg, monkeypatch):
    import kdlab.cache.key as key_module
    from kdlab.config import Config

    monkeypatch.setattr(key_module, "teacher_identity", lambda cfg: {})

    def key(data_cfg):
        bundle = build_data(data_cfg, seed=0)
        return key_module.cache_key(Config(data=data_cfg), bundle, pipeline="fast", seed=0, global_batch=10)

    plain, noisy = key(_cfg(make_cfg)), key(_cfg(make_cfg, label_noise=_noise(0.3, 1)))
    fewer = key(_cfg(make_cfg, per_class=2))
    assert set(plain["data"]) == {"name", "fingerprint", "train_size"}  # as before without the new keys
    assert noisy["data"]["label_noise"] == {"rate": 0.3, "seed": 1}
    assert noisy["data"]["fingerprint"] != plain["data"]["fingerprint"] != fewer["data"]["fingerprint"]
    assert fewer["data"]["train_size"] == 20
    lines = key_module.key_differences(noisy, plain)
    assert "data.label_noise.rate: cache has 0.3, this run has '(absent)'" in lines


# ----------------------------------------------------------- config and defaults
@pytest.mark.parametrize(
    "override, message",
    [
        ("data.per_class=0", "data.per_class=0 is out of range: a count must be >= 1"),
        ("data.per_class=-3", "data.per_class=-3 is out of range"),
        ("data.per_class=1.5", "data.per_class=1.5 is out of range: a fraction must be in (0, 1]"),
        ("data.per_class=0.0", "data.per_class=0.0 is out of range: a fraction must be in (0, 1]"),
        ("data.per_class=5.0", "write 5 (no decimal point) for a count"),
        ("data.per_class=.nan", "data.per_class=nan is out of range"),
        ("data.per_class=true", "data.per_class must be an integer count >= 1 or a fraction in (0, 1], got True"),
        ("data.per_class=five", "data.per_class must be an integer count >= 1"),
        ("data.per_class=[5]", "data.per_class must be an integer count >= 1"),
        ("data.label_noise.rate=1", "data.label_noise.rate=1.0 is out of range: must be < 1"),
        ("data.label_noise.rate=1.5", "data.label_noise.rate=1.5 is out of range: must be < 1"),
        ("data.label_noise.rate=-0.1", "data.label_noise.rate=-0.1 is out of range: must be >= 0"),
        ("data.label_noise.rate=lots", "data.label_noise.rate must be a number"),
        ("data.label_noise.rate=.inf", "data.label_noise.rate must be a finite number"),
        ("data.label_noise.seed=-1", "data.label_noise.seed=-1 is out of range: must be >= 0"),
        ("data.label_noise.seed=0.5", "data.label_noise.seed must be an integer"),
        ("data.label_noise=0.3", "data.label_noise must be a mapping"),
        ("data.label_noise.ratio=0.3", "unknown config key data.label_noise.ratio (did you mean data.label_noise.rate?)"),
    ],
)
def test_bad_values_are_one_line_config_errors_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_good_values_and_round_trip():
    cfg = load_config(None, ["data.per_class=5", "data.label_noise={rate: 0.3, seed: 2}"])
    assert cfg.data.per_class == 5 and isinstance(cfg.data.per_class, int)
    assert cfg.data.label_noise == LabelNoiseConfig(rate=0.3, seed=2)
    assert from_dict(__import__("yaml").safe_load(dump_yaml(cfg))) == cfg
    fraction = load_config(None, ["data.per_class=0.1", "data.label_noise.rate=0"]).data
    assert fraction.per_class == 0.1 and isinstance(fraction.per_class, float)
    assert fraction.label_noise.rate == 0.0
    assert load_config(None, ["data.per_class=1e-1"]).data.per_class == 0.1  # YAML reads 1e-1 as text
    assert load_config(None, ["data.label_noise=null"]).data.label_noise == LabelNoiseConfig()


def test_defaults_leave_everything_unchanged(make_cfg):
    default = DataConfig()
    assert default.per_class is None and default.label_noise == LabelNoiseConfig(rate=None, seed=None)
    cfg = _cfg(make_cfg, subset=50)
    bundle = build_data(cfg, seed=1)
    explicit = build_data(dataclasses.replace(cfg, per_class=None, label_noise=_noise(None, 5)), seed=1)
    source = open_source(cfg)
    # the fingerprint of a run without the new keys is the formula used before they existed
    old = f"{source.fingerprint}|{selection_digest(np.sort(torch.randperm(100, generator=_subset_generator()).numpy()[:50]))}|8"
    assert bundle.fingerprint == explicit.fingerprint == hashlib.blake2b(old.encode(), digest_size=16).hexdigest()
    assert bundle.notes == [] and torch.equal(bundle.train_targets, _targets(bundle.train_eval))
    for a, b in zip(bundle.train.epoch(0), explicit.train.epoch(0)):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
        assert torch.equal(a["index"], b["index"])
    info = dataset_info(cfg)
    assert info["per_class"] is None and info["label_noise"] is None


def _subset_generator() -> torch.Generator:
    from kdlab.data.seeding import generator_for

    return generator_for("subset", 50, 100)


def test_detection_refuses_the_classification_keys():
    from kdlab.data.detection import build_detection_data

    for overrides, key in (({"per_class": 5}, "data.per_class=5"), ({"label_noise": _noise(0.2)}, "data.label_noise.rate=0.2")):
        cfg = DataConfig(name="coco", augment="flip", root="/nonexistent", **overrides)
        with pytest.raises(DataError, match=f"{key} is a classification key"):
            build_detection_data(cfg, seed=0, device=torch.device("cpu"))
