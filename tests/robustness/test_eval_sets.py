"""Evaluation-only image sets: class folders, released corruption sets, fixed evaluation subsets, data specs."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from kdlab.config import ConfigError, load_config
from kdlab.data import DataError, build_data
from kdlab.data.eval_subset import eval_subset, subset_positions
from kdlab.data.sources.labelled_folder import class_index, open_class_folders, open_corruption_set
from kdlab.engine.transfer_eval import parse_data_spec

CLASSES = ["cat", "dog", "frog"]


def _image(path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_class_folders_by_name_or_by_index(tmp_path):
    _image(tmp_path / "named" / "dog" / "a.png", 10)
    _image(tmp_path / "named" / "frog" / "sub" / "b.jpg", 20)
    split = open_class_folders(tmp_path / "named", CLASSES)
    assert list(split.labels) == [1, 2] and len(split) == 2
    _image(tmp_path / "indexed" / "0" / "a.png", 10)
    _image(tmp_path / "indexed" / "2" / "b.png", 10)
    assert list(open_class_folders(tmp_path / "indexed", CLASSES).labels) == [0, 2]
    assert class_index("cat", CLASSES, tmp_path) == 0


def test_class_folders_that_name_no_class_or_hold_nothing_are_one_clear_error(tmp_path):
    _image(tmp_path / "bad" / "horse" / "a.png", 10)
    with pytest.raises(DataError, match="names no class of the model"):
        open_class_folders(tmp_path / "bad", CLASSES)
    _image(tmp_path / "range" / "7" / "a.png", 10)
    with pytest.raises(DataError, match="not a class index below 3"):
        open_class_folders(tmp_path / "range", CLASSES)
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="hold no images"):
        open_class_folders(tmp_path / "empty", CLASSES)
    with pytest.raises(DataError, match="no such folder"):
        open_class_folders(tmp_path / "absent", CLASSES)


def test_a_cifar_c_style_npy_set_is_read_per_severity(tmp_path):
    labels = np.array([0, 1, 2, 1], dtype=np.int64)
    images = np.stack([np.full((8, 8, 3), 10 * s, dtype=np.uint8) for s in range(1, 6) for _ in range(4)])
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "snow.npy", images)
    cells = open_corruption_set(tmp_path, CLASSES, names=["fog"], severities=(1, 5))
    assert [(c.corruption, c.severity) for c in cells] == [("fog", 1), ("fog", 5)]
    assert cells[1].split.arrays.shape == (4, 3, 8, 8) and int(cells[1].split.arrays[0, 0, 0, 0]) == 50
    assert list(cells[0].split.labels) == list(labels)
    with pytest.raises(DataError, match="holds no gaussian_noise"):
        open_corruption_set(tmp_path, CLASSES, names=["fog", "gaussian_noise"])


def test_an_npy_file_holding_pickled_objects_is_refused_not_unpickled(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(2, dtype=np.int64))
    with open(tmp_path / "fog.npy", "wb") as handle:
        np.lib.format.write_array(handle, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable .npy array"):
        open_corruption_set(tmp_path, CLASSES)
    (tmp_path / "fog.npy").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="not a readable .npy array"):
        open_corruption_set(tmp_path, CLASSES)


def test_an_imagenet_c_style_tree(tmp_path):
    for severity in (1, 2):
        _image(tmp_path / "fog" / str(severity) / "dog" / "a.png", 30)
        _image(tmp_path / "fog" / str(severity) / "cat" / "b.png", 30)
    cells = open_corruption_set(tmp_path, CLASSES, severities=(1, 2, 3))
    assert [(c.corruption, c.severity, len(c.split)) for c in cells] == [("fog", 1, 2), ("fog", 2, 2)]
    with pytest.raises(DataError, match="no corruption found"):
        open_corruption_set(tmp_path, CLASSES, severities=(4,))


def test_a_fixed_evaluation_subset_is_the_same_for_every_call_and_both_pipelines():
    assert torch.equal(subset_positions(100, 10, 0), subset_positions(100, 10, 0))
    assert not torch.equal(subset_positions(100, 10, 0), subset_positions(100, 10, 1))
    assert torch.equal(subset_positions(5, 10, 0), torch.arange(5))
    cfg = load_config(None, ["data.name=digits", "data.num_workers=0", "data.eval_batch_size=16"]).data
    indices = {}
    for pipeline in ("fast", "standard"):
        bundle = build_data(dataclasses.replace(cfg, pipeline=pipeline), seed=0)
        subset = eval_subset(bundle.eval, 20, seed=3)
        got = torch.cat([batch["index"] for batch in subset])
        assert subset.num_samples == 20 and got.numel() == 20
        indices[pipeline] = got
        assert eval_subset(bundle.eval, 10_000, seed=3) is bundle.eval
    assert torch.equal(indices["fast"], indices["standard"])
    assert torch.equal(indices["fast"], subset_positions(360, 20, 3))


def test_data_specs_name_any_dataset_with_data_keys():
    like = load_config(None, ["data.cache_dir=/tmp/kdlab-cache", "data.num_workers=0"]).data
    digits = parse_data_spec("digits", like)
    assert digits.name == "digits" and digits.augment == "none" and digits.cache_dir == "/tmp/kdlab-cache"
    folder = parse_data_spec("imagefolder:data/pets.zip,image_size=64,subset=500", like)
    assert (folder.name, folder.root, folder.image_size, folder.subset) == ("imagefolder", "data/pets.zip", 64, 500)
    for bad, message in (("", "empty data spec"), ("mnist", "data.name"), ("digits,image_size", "key=value"),
                         ("digits,colour=3", "colour"), ("digits,batch_size=3", "cannot be set in a data spec"),
                         ("digits,image_size=-1", "image_size")):
        with pytest.raises(ConfigError, match=message):
            parse_data_spec(bad, like)
