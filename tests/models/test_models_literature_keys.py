"""Checkpoints of the KD literature's CIFAR model code (RepDistiller/CRD, mdistiller/DKD/CKD, SSKD) load into the zoo.

No download: ``literature_keys/`` describes those code bases' state dicts (key
names and shapes, written from reading their ``models/``; checked against
digests of what the real code produced) and, per key, the kdlab key it must
land in. A random state dict in their naming, saved in their file layout, must
load through ``create_model(..., checkpoint=...)`` into exactly those kdlab keys
and give the logits of the same weights saved in kdlab's own naming.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

from kdlab.models import CheckpointMismatchError, create_model, list_models, load_checkpoint


def _load_layouts() -> ModuleType:
    path = Path(__file__).resolve().parent / "literature_keys" / "foreign_layouts.py"
    spec = importlib.util.spec_from_file_location("kdlab_test_foreign_layouts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


layouts = _load_layouts()

#: how each code base saves a teacher: RepDistiller's train_teacher.py (mdistiller's release alike), SSKD's teacher.py
FILE_LAYOUTS = {
    "RepDistiller": lambda sd: {"epoch": 240, "model": sd, "accuracy": 75.0},
    "mdistiller": lambda sd: {"epoch": 240, "model": sd, "accuracy": 75.0},
    "SSKD": lambda sd: {"epoch": 240, "state_dict": sd, "acc": 75.0},
}


def random_tensors(entries: list[Any], seed: int) -> list[torch.Tensor]:
    """One tensor per entry: tame enough that deep nets give finite, input-dependent logits."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for entry in entries:
        key, shape = entry.foreign, entry.shape
        if key.endswith("num_batches_tracked"):
            tensors.append(torch.randint(1, 1000, shape, generator=generator, dtype=torch.int64))
        elif key.endswith("running_var"):
            tensors.append(torch.rand(shape, generator=generator) + 0.5)
        elif key.endswith(("running_mean", "bias")):
            tensors.append(torch.randn(shape, generator=generator) * 0.1)
        elif len(shape) == 1:  # BatchNorm scale: below 1 keeps 110-layer residual sums bounded
            tensors.append(torch.rand(shape, generator=generator) * 0.3 + 0.2)
        else:
            fan_in = 1
            for size in shape[1:]:
                fan_in *= size
            tensors.append(torch.randn(shape, generator=generator) / fan_in**0.5)
    return tensors


def distinct_namings(name: str) -> dict[tuple[str, ...], list[str]]:
    """The code bases of ``name`` grouped by identical key lists (most architectures: one group of three)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for code_base in layouts.code_bases_of(name):
        keys = tuple(e.foreign for e in layouts.entries(name, code_base))
        groups.setdefault(keys, []).append(code_base)
    return groups


def logits(model: nn.Module) -> torch.Tensor:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return model.eval()(x)


def test_the_description_covers_the_whole_zoo() -> None:
    assert set(layouts.ARCHITECTURES) == set(list_models())


@pytest.mark.parametrize(
    "code_base,name",
    [(cb, name) for cb, names in layouts.REAL_CODE_DIGESTS["digests"].items() for name in names],
)
def test_the_description_gives_the_keys_and_shapes_of_the_real_code(code_base: str, name: str) -> None:
    expected = layouts.REAL_CODE_DIGESTS["digests"][code_base][name]
    entries = layouts.entries(name, code_base)
    assert len(entries) == expected["keys"]
    assert layouts.digest(entries) == expected["sha256"], f"{code_base} {name}: derived keys/shapes differ"


def test_every_described_code_base_has_a_real_code_digest() -> None:
    digests = layouts.REAL_CODE_DIGESTS["digests"]
    described = {(cb, name) for name in layouts.ARCHITECTURES for cb in layouts.code_bases_of(name)}
    assert described == {(cb, name) for cb, names in digests.items() for name in names}


@pytest.mark.parametrize("name", sorted(layouts.ARCHITECTURES, key=str.lower))
def test_a_foreign_checkpoint_loads_into_the_kdlab_keys_with_the_same_logits(name: str, tmp_path: Path) -> None:
    num_classes = layouts.num_classes_of(name)
    model: nn.Module | None = None
    for group, code_bases in distinct_namings(name).items():
        entries = layouts.entries(name, code_bases[0])
        tensors = random_tensors(entries, seed=len(group))
        theirs = {e.foreign: t for e, t in zip(entries, tensors)}
        ours = {e.kdlab: t for e, t in zip(entries, tensors)}
        expected_mapping = {e.foreign: e.kdlab for e in entries}
        assert len(ours) == len(theirs), f"{name}: the description maps two keys onto one"

        ours_path = tmp_path / f"kdlab_{code_bases[0]}.pt"
        torch.save({"model": ours}, ours_path)
        for file_layout in sorted({"SSKD" if cb == "SSKD" else "RepDistiller" for cb in code_bases}):
            path = tmp_path / f"{file_layout}_{name}.pth"
            torch.save(FILE_LAYOUTS[file_layout](theirs), path)
            if model is None:
                model = create_model(name, num_classes=num_classes, checkpoint=path)
            result = load_checkpoint(model, path)
            # (a) complete: every kdlab key filled, no foreign key left over
            assert not result.missing_keys and not result.unexpected_keys and not result.dropped_keys
            mapping = {key: result.renamed_keys.get(key, key) for key in theirs}
            assert set(mapping.values()) == set(model.state_dict()), f"{name} ({code_bases}): keys left unfilled"
            # (b) the loader's renaming is the independent one, tensor for tensor
            assert mapping == expected_mapping, f"{name} ({code_bases}): renamed differently from the description"
            state = model.state_dict()
            assert all(torch.equal(state[e.kdlab], t) for e, t in zip(entries, tensors))
            assert result.extra["epoch"] == 240
            foreign_logits = logits(model)

            own = load_checkpoint(model, ours_path)  # kdlab's own naming: loaded as before, nothing renamed
            assert own.renamed_keys == {} and own.layout is None
            torch.testing.assert_close(logits(model), foreign_logits, rtol=0, atol=1e-5)
            assert torch.isfinite(foreign_logits).all() and foreign_logits.std() > 0


def _resnet_file(tmp_path: Path, name: str, code_base: str = "RepDistiller") -> tuple[Path, dict[str, torch.Tensor]]:
    entries = layouts.entries(name, code_base)
    state = {e.foreign: t for e, t in zip(entries, random_tensors(entries, seed=0))}
    path = tmp_path / f"{name}_{code_base}.pth"
    torch.save(FILE_LAYOUTS[code_base](state), path)
    return path, state


def test_the_layout_is_reported_with_the_renamed_keys(tmp_path: Path) -> None:
    path, _ = _resnet_file(tmp_path, "resnet20")
    result = load_checkpoint(create_model("resnet20"), path)
    assert result.layout is not None and "CIFAR ResNet" in result.layout
    assert result.renamed_keys["layer2.0.downsample.0.weight"] == "layer2.0.shortcut.0.weight"
    assert result.extra == {"epoch": 240, "accuracy": 75.0}


def test_sskd_wrapper_checkpoint_loads_the_backbone_and_sets_the_head_aside(tmp_path: Path) -> None:
    entries = layouts.entries("wrn_16_2", "SSKD")
    state = {"backbone." + e.foreign: t for e, t in zip(entries, random_tensors(entries, seed=3))}
    head = {"proj_head.0.weight": torch.randn(128, 128), "proj_head.0.bias": torch.zeros(128)}
    head |= {"proj_head.2.weight": torch.randn(128, 128), "proj_head.2.bias": torch.zeros(128)}
    path = tmp_path / "sskd_student_best.pth"  # student.py: the wrapper's state_dict
    torch.save({"epoch": 240, "state_dict": state | head, "best_acc": 75.0}, path)
    model = create_model("wrn_16_2", num_classes=100)
    result = load_checkpoint(model, path)
    assert sorted(result.dropped_keys) == sorted(head)
    assert result.renamed_keys["backbone.block2.layer.0.convShortcut.weight"] == "block2.0.shortcut.weight"
    assert torch.equal(model.state_dict()["bn.running_var"], state["backbone.bn1.running_var"])


def test_a_foreign_file_of_another_depth_names_the_file_the_keys_and_the_layout(tmp_path: Path) -> None:
    path, _ = _resnet_file(tmp_path, "resnet20")
    model = create_model("resnet32")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "missing keys (" in message and "layer1.3.conv1.weight" in message
    assert "read as RepDistiller/mdistiller/SSKD CIFAR ResNet" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_foreign_file_with_a_key_too_few_or_too_many_still_fails(tmp_path: Path) -> None:
    entries = layouts.entries("wrn_16_1", "RepDistiller")
    state = {e.foreign: t for e, t in zip(entries, random_tensors(entries, seed=0))}
    state.pop("block3.layer.0.convShortcut.weight")
    state["block3.layer.0.extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrn_16_1.pth"
    torch.save(FILE_LAYOUTS["RepDistiller"](state), path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): block3\.0\.shortcut\.weight") as info:
        create_model("wrn_16_1", checkpoint=path)
    assert "unexpected keys (1): block3.0.extra.weight" in str(info.value)


def test_a_projection_shortcut_file_does_not_fit_the_zero_pad_shortcut(tmp_path: Path) -> None:
    path, _ = _resnet_file(tmp_path, "resnet8")
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys.*layer2\.0\.shortcut\.0\.weight.*shortcut='A'"):
        create_model("resnet8", shortcut="A", checkpoint=path)


def test_the_literature_names_are_only_read_for_their_own_network(tmp_path: Path) -> None:
    path, _ = _resnet_file(tmp_path, "wrn_16_1")
    with pytest.raises(CheckpointMismatchError) as info:
        create_model("resnet14", checkpoint=path)
    assert "read as" not in str(info.value) and "block1.layer.0.bn1.weight" in str(info.value)
