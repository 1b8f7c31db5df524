"""Real timm models (tiny configurations) through the one feature API, timm weight files, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is an optional dependency (in the test extra)")

from kdlab.models import CheckpointMismatchError, FeatureModel, create_model, load_checkpoint  # noqa: E402
from kdlab.models.checkpoint import is_safetensors_file  # noqa: E402
from kdlab.models.timm_adapter import TimmFeatureModel  # noqa: E402

#: name, timm options, expected per-sample stage shapes at 32x32
TINY_MODELS = [
    ("resnet18", {}, [(64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1)]),
    ("convnext_atto", {}, [(40, 8, 8), (80, 4, 4), (160, 2, 2), (320, 1, 1)]),
    ("vit_tiny_patch16_224", {"img_size": 32}, [(192, 2, 2)] * 4),
    ("deit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}, [(192, 4, 4)] * 4),
    ("deit_tiny_distilled_patch16_224", {"img_size": 32}, [(192, 2, 2)] * 4),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name,options,shapes", TINY_MODELS, ids=[m[0] for m in TINY_MODELS])
def test_forward_all_gives_logits_embedding_and_stages_of_one_pass(name, options, shapes) -> None:
    torch.manual_seed(0)
    model = create_model(f"timm:{name}", num_classes=7, **options).eval()
    assert isinstance(model, FeatureModel) and isinstance(model, TimmFeatureModel)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_all(x)
        net = model.timm_model
        pre_logits = net.forward_head(net.forward_features(x), pre_logits=True)
        torch.testing.assert_close(features.logits, model(x))
        torch.testing.assert_close(features.logits, net(x))
    assert [tuple(s.shape[1:]) for s in features.stages] == shapes
    assert features.preact_stages == features.stages
    assert model.stage_channels == [s[0] for s in shapes]
    assert features.logits.shape == (2, 7) and features.embedding.shape == (2, model.embedding_dim)
    torch.testing.assert_close(features.embedding, pre_logits)


def test_vit_stages_are_the_chosen_blocks_patch_tokens_reshaped_and_prefix_tokens_kept_apart() -> None:
    torch.manual_seed(0)
    model = create_model("timm:deit_tiny_distilled_patch16_224", num_classes=3, img_size=32, patch_size=8).eval()
    net = model.timm_model
    assert model.stage_indices == [2, 5, 8, 11] and model.prefix_names == ("cls", "dist")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        block_out = []
        h = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
        for block in net.blocks:
            h = block(h)
            block_out.append(h)
    for stage, prefix, index in zip(tokens.features.stages, tokens.stage_prefix_tokens, model.stage_indices):
        expected = block_out[index][:, 2:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2)
        torch.testing.assert_close(stage, expected)  # token i = row i // 4, column i % 4
        torch.testing.assert_close(prefix, block_out[index][:, :2])
    final = net.norm(block_out[-1])
    torch.testing.assert_close(tokens.final_tokens, final)
    torch.testing.assert_close(tokens.class_token, final[:, 0])
    torch.testing.assert_close(tokens.distillation_token, final[:, 1])
    # the distilled head averages both tokens' heads; the embedding is timm's pre-logits (their mean)
    torch.testing.assert_close(tokens.features.logits, (net.head(final[:, 0]) + net.head_dist(final[:, 1])) / 2)
    torch.testing.assert_close(tokens.features.embedding, (final[:, 0] + final[:, 1]) / 2)
    assert model.get_classifier() is net.head
    with pytest.raises(KeyError, match="reg0.*'cls', 'dist'"):
        tokens.prefix_token("reg0")


def test_vit_without_class_token_and_with_register_tokens() -> None:
    plain = create_model("timm:vit_tiny_patch16_224", num_classes=2, img_size=32, depth=2, class_token=False,
                         global_pool="avg")
    registers = create_model("timm:vit_tiny_patch16_224", num_classes=2, img_size=32, depth=2, reg_tokens=2)
    x = torch.randn(1, 3, 32, 32)
    assert plain.prefix_names == () and plain.stage_indices == [0, 1]
    tokens = plain.forward_tokens(x)
    assert tokens.class_token is None and tokens.stage_prefix_tokens[0].shape == (1, 0, 192)
    assert registers.prefix_names == ("cls", "reg0", "reg1")
    assert registers.forward_tokens(x).stage_prefix_tokens[1].shape == (1, 3, 192)


def test_stage_indices_option_picks_blocks_and_bad_ones_are_named() -> None:
    model = create_model("timm:vit_tiny_patch16_224", num_classes=2, img_size=32, stage_indices=[0, -1])
    assert model.stage_indices == [0, 11] and len(model.forward_all(torch.randn(1, 3, 32, 32)).stages) == 2
    cnn = create_model("timm:resnet18", num_classes=2, stage_indices=[0, 4]).eval()
    assert [tuple(s.shape[1:]) for s in cnn.forward_all(torch.randn(1, 3, 32, 32)).stages] == [(64, 16, 16),
                                                                                               (512, 1, 1)]
    with pytest.raises(ValueError, match=r"timm:resnet18: stage_indices=\[1, 5\] has 5, outside the model's 5"):
        create_model("timm:resnet18", num_classes=2, stage_indices=[1, 5])
    with pytest.raises(ValueError, match="shallow to deep"):
        create_model("timm:resnet18", num_classes=2, stage_indices=[3, 1])


def test_fixed_resolution_is_reported_and_another_size_is_a_clear_error() -> None:
    vit = create_model("timm:vit_tiny_patch16_224", num_classes=2, img_size=64, depth=1)
    assert vit.input_size == (64, 64)
    with pytest.raises(ValueError, match=r"timm:vit_tiny_patch16_224 takes 64x64 images .* got 32x32.*img_size=32"):
        vit.forward_all(torch.randn(1, 3, 32, 32))
    dynamic = create_model("timm:vit_tiny_patch16_224", num_classes=2, depth=1, dynamic_img_size=True)
    assert dynamic.input_size is None and dynamic(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    assert create_model("timm:resnet18", num_classes=2).input_size is None


def test_reset_classifier_to_an_embedding_model() -> None:
    model = create_model("timm:vit_tiny_patch16_224", num_classes=5, img_size=32, depth=1)
    model.reset_classifier(0)
    features = model.forward_all(torch.randn(2, 3, 32, 32))
    assert model.num_classes == 0 and torch.equal(features.logits, features.embedding)


@pytest.mark.parametrize("option", ["pretrained", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"])
def test_downloading_options_are_refused_with_a_message_to_pass_a_file(option: str) -> None:
    value = {"pretrained": True, "pretrained_cfg_overlay": {"file": "x"}}.get(option, "somewhere")
    with pytest.raises(ValueError, match=rf"timm:resnet18: {option}=.* never downloads .* checkpoint="):
        create_model("timm:resnet18", num_classes=2, **{option: value})


def test_pretrained_false_is_accepted_and_unknown_names_get_suggestions() -> None:
    assert create_model("timm:resnet18", num_classes=2, pretrained=False).num_classes == 2
    with pytest.raises(ValueError, match="unknown timm model 'resnet181'.*did you mean"):
        create_model("timm:resnet181", num_classes=2)


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("file_name", ["model.safetensors", "pytorch_model.bin", "weights.pth"])
@pytest.mark.parametrize("name,options", [("resnet18", {}), ("vit_tiny_patch16_224", {"img_size": 32, "depth": 2})])
def test_a_weight_file_written_by_timms_own_model_loads_with_identical_logits(tmp_path, file_name, name, options):
    torch.manual_seed(1)
    original = timm.create_model(name, pretrained=False, num_classes=6, **options).eval()
    path = _save(original.state_dict(), tmp_path / file_name)
    assert is_safetensors_file(path) == file_name.endswith(".safetensors")
    model = create_model(f"timm:{name}", num_classes=6, checkpoint=path, **options).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
        assert torch.equal(model.forward_all(x).logits, original(x))


def test_safetensors_is_recognised_by_content_and_a_misfit_names_the_shapes(tmp_path: Path) -> None:
    original = timm.create_model("resnet18", pretrained=False, num_classes=6)
    path = _save(original.state_dict(), tmp_path / "model.safetensors")
    renamed = path.rename(tmp_path / "weights")  # hub downloads are sometimes stored without the suffix
    assert is_safetensors_file(renamed)
    load_checkpoint(create_model("timm:resnet18", num_classes=6), renamed)
    with pytest.raises(CheckpointMismatchError, match=r"model\.fc\.weight: checkpoint \[6, 512\] vs model \[3, 512\]"):
        create_model("timm:resnet18", num_classes=3, checkpoint=renamed)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(renamed.read_bytes()[:100])  # a truncated download
    with pytest.raises(ValueError, match="cannot be read as a safetensors file"):
        create_model("timm:resnet18", num_classes=6, checkpoint=broken)
