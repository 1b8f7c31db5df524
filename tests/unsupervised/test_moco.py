"""convert_moco_checkpoint: MoCo's query encoder -> a plain torchvision state_dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.methods.unsupervised import convert_moco_checkpoint


def fake_moco(prefix: str = "module.") -> dict:
    """A tiny MoCo-v2-shaped checkpoint: query and key encoders, MLP projection, queue."""
    backbone = {
        "conv1.weight": torch.randn(4, 3, 3, 3), "bn1.weight": torch.rand(4), "bn1.running_mean": torch.zeros(4),
    }
    mlp = {"fc.0.weight": torch.randn(4, 4), "fc.0.bias": torch.randn(4), "fc.2.weight": torch.randn(2, 4),
           "fc.2.bias": torch.randn(2)}
    state = {}
    for encoder in ("encoder_q", "encoder_k"):
        for key, value in {**backbone, **mlp}.items():
            state[f"{prefix}{encoder}.{key}"] = value.clone()
    state[f"{prefix}queue"] = torch.randn(2, 16)
    state[f"{prefix}queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_query_backbone_is_kept_projection_dropped_placeholder_classifier_added(tmp_path: Path, prefix):
    src, dst = tmp_path / "moco.pth.tar", tmp_path / "out" / "r50.pt"
    ckpt = fake_moco(prefix)
    torch.save(ckpt, src)
    assert convert_moco_checkpoint(src, dst, num_classes=7) == dst
    state = torch.load(dst, weights_only=True)
    assert set(state) == {"conv1.weight", "bn1.weight", "bn1.running_mean", "fc.weight", "fc.bias"}
    assert torch.equal(state["conv1.weight"], ckpt["state_dict"][f"{prefix}encoder_q.conv1.weight"])
    assert state["fc.weight"].shape == (7, 4) and not state["fc.weight"].any() and not state["fc.bias"].any()


def test_without_placeholder_and_with_errors(tmp_path: Path):
    src = tmp_path / "moco.pth.tar"
    torch.save(fake_moco(), src)
    state = torch.load(convert_moco_checkpoint(src, tmp_path / "a.pt", num_classes=0), weights_only=True)
    assert set(state) == {"conv1.weight", "bn1.weight", "bn1.running_mean"}
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="encoder_q"):
        convert_moco_checkpoint(tmp_path / "plain.pt", tmp_path / "b.pt")
    with pytest.raises(ValueError, match="num_classes"):
        convert_moco_checkpoint(src, tmp_path / "c.pt", num_classes=-1)


def test_converted_torchvision_resnet_loads_strictly_as_an_embedding_teacher(tmp_path: Path):
    import torchvision

    from kdlab.models import create_model

    encoder = torchvision.models.resnet18(num_classes=128)  # MoCo v1 style: fc is the 128-d projection
    state = {f"module.encoder_q.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"module.encoder_k.{k}": v for k, v in encoder.state_dict().items()})
    torch.save({"state_dict": state}, tmp_path / "moco.pth.tar")
    dst = convert_moco_checkpoint(tmp_path / "moco.pth.tar", tmp_path / "r18.pt")
    teacher = create_model("tv:resnet18", num_classes=1000, checkpoint=dst)
    teacher.reset_classifier(0)  # what teacher.embedding_only does
    x = torch.randn(2, 3, 32, 32)
    encoder.eval(), teacher.eval()
    with torch.no_grad():
        expected = torch.flatten(encoder.avgpool(encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(
            encoder.maxpool(encoder.relu(encoder.bn1(encoder.conv1(x))))))))), 1)
        assert torch.allclose(teacher(x), expected, atol=1e-5)
