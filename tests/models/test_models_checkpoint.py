"""Checkpoint formats: each round-trips; wrong files fail clearly and change nothing."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from kdlab.models import CheckpointMismatchError, UnsafeCheckpointError, create_model, load_checkpoint


def fresh(name: str = "resnet8", seed: int = 0, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=kwargs.pop("num_classes", 10), **kwargs)


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


FORMATS: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {
    "plain state_dict": lambda sd: sd,
    "kdlab training checkpoint": lambda sd: {"model": sd, "epoch": 3, "step": 0, "config": {"lr": 0.1}},
    "state_dict key": lambda sd: {"state_dict": sd, "best_prec1": 91.5},
    "DataParallel prefix": lambda sd: {"state_dict": prefixed(sd, "module."), "best_prec1": 91.5},
    "torch.compile prefix": lambda sd: prefixed(sd, "_orig_mod."),
    "DDP around compile": lambda sd: {"model": prefixed(sd, "module._orig_mod.")},
    "model key": lambda sd: {"model": sd},
    "net key": lambda sd: {"net": sd, "acc": 90.0},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_round_trips(fmt: str, tmp_path: Path) -> None:
    source = fresh(seed=1)
    path = tmp_path / "weights.pt"
    torch.save(FORMATS[fmt](source.state_dict()), path)
    target = fresh(seed=2)
    load_checkpoint(target, path)
    assert_same_weights(source, target)


def test_extra_entries_are_returned(tmp_path: Path) -> None:
    path = tmp_path / "weights.th"
    torch.save({"state_dict": fresh().state_dict(), "best_prec1": 91.5}, path)
    result = load_checkpoint(fresh(), path)
    assert result.extra == {"best_prec1": 91.5} and result.path == path


def test_create_model_loads_the_checkpoint(tmp_path: Path) -> None:
    source = fresh(seed=1)
    path = tmp_path / "weights.pt"
    torch.save({"model": source.state_dict()}, path)
    assert_same_weights(source, create_model("resnet8", num_classes=10, checkpoint=path))


def test_akamaster_layout_with_linear_classifier_loads_into_option_a_resnet(tmp_path: Path) -> None:
    source = fresh("resnet20", seed=1, shortcut="A")
    # akamaster/pytorch_resnet_cifar10: DataParallel prefix, classifier named `linear`, no num_batches_tracked
    state = {
        "module." + k.replace("fc.", "linear."): v
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "resnet20.th"
    torch.save({"state_dict": state, "best_prec1": 91.78}, path)
    target = create_model("resnet20", num_classes=10, shortcut="A", checkpoint=path).eval()
    source.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(target(x), source(x))


def test_wrong_architecture_lists_missing_and_unexpected_keys_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet14.pt"
    torch.save({"model": fresh("resnet14").state_dict()}, path)
    target = fresh("resnet8")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(target, path)
    message = str(info.value)
    assert str(path) in message
    assert "unexpected keys (" in message and "layer1.1.conv1.weight" in message
    assert isinstance(info.value, ValueError)
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_missing_keys_are_counted_and_the_list_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "resnet8.pt"
    torch.save(fresh("resnet8").state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(\d\d+\): .*\.\.\. \(\d+ more\)"):
        load_checkpoint(fresh("resnet14"), path)


def test_shape_mismatch_shows_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "hundred.pt"
    torch.save(fresh(num_classes=100).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"fc\.weight: checkpoint \[100, 64\] vs model \[10, 64\]"):
        load_checkpoint(fresh(num_classes=10), path)


def test_non_strict_load_skips_what_does_not_fit(tmp_path: Path) -> None:
    source = fresh(num_classes=100, seed=1)
    path = tmp_path / "hundred.pt"
    torch.save(source.state_dict(), path)
    target = fresh(num_classes=10, seed=2)
    result = load_checkpoint(target, path, strict=False)
    assert result.shape_mismatches == ["fc.bias", "fc.weight"]
    assert torch.equal(target.conv1.weight, source.conv1.weight)


def test_pickled_objects_are_refused_with_the_opt_in_explained(tmp_path: Path) -> None:
    source = fresh(seed=1)
    path = tmp_path / "old_style.pth"
    torch.save({"state_dict": source.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="--unsafe-load") as info:
        load_checkpoint(fresh(), path)
    assert str(path) in str(info.value)
    target = fresh(seed=2)
    result = load_checkpoint(target, path, unsafe=True)
    assert_same_weights(source, target)
    assert result.extra["args"].lr == 0.1


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(fresh(), tmp_path / "nope.pt")


def test_a_file_without_weights_lists_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "config_only.pt"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, path)
    with pytest.raises(ValueError, match=r"no state_dict.*'epoch', 'config'"):
        load_checkpoint(fresh(), path)
