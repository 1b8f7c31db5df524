"""``det:`` detectors: torchvision Faster R-CNN over zoo / torchvision backbones, built by name.

Tiny canvases (64 px, min_size = max_size = 64) and narrow heads keep every
build and forward pass well under a second on a CPU.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from kdlab.models import CheckpointMismatchError, create_model, list_models, register_model
from kdlab.models.detection import is_detector, list_detector_names, transform_signature

SHARED = Path(os.environ.get("KDLAB_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
RESNET56 = SHARED / "teachers" / "resnet56-4bfd9763.th"
K = 3
CANVAS = 64
#: small everything: a 64-px canvas, a 32-channel FPN, a 64-wide box head, few proposals and samples
TINY: dict[str, Any] = dict(
    min_size=CANVAS,
    max_size=CANVAS,
    representation_size=64,
    rpn_pre_nms_top_n_train=64,
    rpn_pre_nms_top_n_test=64,
    rpn_post_nms_top_n_train=32,
    rpn_post_nms_top_n_test=32,
    rpn_batch_size_per_image=32,
    box_batch_size_per_image=16,
    box_detections_per_img=20,
    box_score_thresh=0.0,  # random weights: keep every detection so the outputs are checked
)
#: the three kinds: zoo backbone, torchvision classifier backbone, torchvision builder (FPN fixed at 256)
NAMES = {
    "det:fasterrcnn_resnet8_fpn": dict(fpn_channels=32),
    "det:fasterrcnn_resnet18_fpn": dict(fpn_channels=32),
    "det:fasterrcnn_mobilenet_v3_large_fpn": {},
}


def build(name: str, **kwargs: Any) -> FasterRCNN:
    return create_model(name, num_classes=K, **{**TINY, **NAMES.get(name, {}), **kwargs})


def images(n: int = 2, size: int = CANVAS) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, size, size, generator=generator) for _ in range(n)]


def targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [0.0, 0.0, 16.0, 16.0]]), "labels": torch.tensor([2, 3])},
    ]


def predict(model: nn.Module, batch: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    model.eval()
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("name", list(NAMES))
def test_detector_is_stock_torchvision_faster_rcnn(name: str) -> None:
    model = build(name)
    assert isinstance(model, FasterRCNN) and isinstance(model, GeneralizedRCNN) and is_detector(model)
    assert model.num_classes == K and model.kdlab_name == name
    assert isinstance(model.transform, GeneralizedRCNNTransform)
    assert isinstance(model.rpn, RegionProposalNetwork)
    assert isinstance(model.roi_heads, RoIHeads)
    assert isinstance(model.roi_heads.box_roi_pool, MultiScaleRoIAlign)
    assert isinstance(model.roi_heads.box_predictor, FastRCNNPredictor)
    assert model.roi_heads.box_predictor.cls_score.out_features == K + 1
    assert isinstance(model.backbone.fpn, FeaturePyramidNetwork) and hasattr(model.backbone, "body")
    levels = model.backbone(torch.zeros(1, 3, CANVAS, CANVAS))
    assert isinstance(levels, OrderedDict) and list(levels)[-1] == "pool"
    assert all(level.shape[1] == model.backbone.out_channels for level in levels.values())
    # one anchor size tuple per FPN level; RoIAlign pools every level but "pool" (torchvision's MobileNet
    # builder lists "0".."3" for its two levels: MultiScaleRoIAlign skips the absent ones)
    assert len(model.rpn.anchor_generator.sizes) == len(levels)
    assert {k for k in levels if k != "pool"} <= set(model.roi_heads.box_roi_pool.featmap_names)


@pytest.mark.parametrize("name", list(NAMES))
def test_train_mode_gives_the_four_finite_torchvision_losses(name: str) -> None:
    model = build(name).train()
    losses = model(images(), targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # nothing left grad-less


@pytest.mark.parametrize("name", list(NAMES))
def test_eval_mode_returns_boxes_in_input_pixels_and_labels_1_to_k(name: str) -> None:
    model = build(name)
    batch = [images(1, CANVAS)[0], images(1, 48)[0]]  # a smaller image: boxes come back in its own pixels
    outputs = predict(model, batch)
    assert len(outputs) == 2
    for image, out in zip(batch, outputs):
        assert set(out) == {"boxes", "labels", "scores"}
        assert len(out["boxes"]) > 0
        height, width = image.shape[-2:]
        boxes = out["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert ((out["labels"] >= 1) & (out["labels"] <= K)).all()
        assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()


@pytest.mark.parametrize("name", list(NAMES))
def test_a_saved_training_checkpoint_loads_back_with_identical_outputs(name: str, tmp_path: Path) -> None:
    model = build(name)
    model.train()
    model(images(), targets())  # moves BatchNorm statistics away from their initial values
    path = tmp_path / "det.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    restored = build(name, checkpoint=path)
    expected, got = predict(model, images()), predict(restored, images())
    for a, b in zip(expected, got):
        assert all(torch.equal(a[k], b[k]) for k in ("boxes", "labels", "scores"))


def test_a_checkpoint_of_another_detector_names_the_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(build("det:fasterrcnn_resnet8_fpn", fpn_channels=16).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"other\.pt.*backbone\.fpn.*fpn_channels"):
        build("det:fasterrcnn_resnet8_fpn", checkpoint=path)
    torch.save(build("det:fasterrcnn_resnet8_fpn").state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"cls_score.*num_classes"):
        create_model("det:fasterrcnn_resnet8_fpn", num_classes=5, checkpoint=path, **TINY, fpn_channels=32)


def test_torchvision_coco_style_files_load_into_the_builders(tmp_path: Path) -> None:
    """torchvision's COCO files: 91 outputs, FrozenBatchNorm (no step counters), pre-0.13 FPN key names."""
    reference = create_model("det:fasterrcnn_mobilenet_v3_large_fpn", num_classes=90, freeze_batchnorm=True)
    state = reference.state_dict()
    assert not any(k.endswith("num_batches_tracked") for k in state if k.startswith("backbone.body"))
    old_style = {
        (k.replace(".0.weight", ".weight").replace(".0.bias", ".bias") if ".fpn." in k and "_blocks." in k else k): v
        for k, v in state.items()
    }
    assert "backbone.fpn.inner_blocks.0.weight" in old_style
    path = tmp_path / "fasterrcnn_mobilenet_v3_large_fpn-coco.pth"
    torch.save(old_style, path)
    model = create_model("det:fasterrcnn_mobilenet_v3_large_fpn", num_classes=90, checkpoint=path)
    assert model.roi_heads.box_predictor.cls_score.out_features == 91
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.shared
def test_backbone_checkpoint_loads_the_akamaster_teacher_exactly_and_freezes_batchnorm() -> None:
    if not RESNET56.is_file():
        pytest.skip(f"needs the shared teacher {RESNET56} (present in CI, absent in a user's clone)")
    file_state = torch.load(RESNET56, map_location="cpu", weights_only=True)["state_dict"]
    model = build("det:fasterrcnn_resnet56_fpn", fpn_channels=32, backbone_checkpoint=RESNET56,
                  backbone_kwargs={"shortcut": "A"})  # fmt: skip
    net = model.backbone.body.net
    assert torch.equal(net.conv1.weight, file_state["module.conv1.weight"])
    assert torch.equal(net.layer3[8].conv2.weight, file_state["module.layer3.8.conv2.weight"])
    assert torch.equal(net.layer2[0].bn1.running_var, file_state["module.layer2.0.bn1.running_var"])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.body.modules())
    assert isinstance(net.bn1, FrozenBatchNorm2d)
    assert all(p.requires_grad for p in model.backbone.parameters())  # zoo default: every stage trains
    unfrozen = build("det:fasterrcnn_resnet56_fpn", fpn_channels=32, backbone_checkpoint=RESNET56,
                     backbone_kwargs={"shortcut": "A"}, freeze_batchnorm=False)  # fmt: skip
    assert isinstance(unfrozen.backbone.body.net.bn1, nn.BatchNorm2d)
    with pytest.raises(CheckpointMismatchError, match=r"resnet56-4bfd9763\.th.*shortcut.*'A'"):
        build("det:fasterrcnn_resnet56_fpn", backbone_checkpoint=RESNET56)  # option-B shortcuts do not fit


def test_backbone_checkpoint_of_a_torchvision_classifier_ignores_its_classifier(tmp_path: Path) -> None:
    classifier = torchvision.models.resnet18(weights=None, num_classes=10)
    path = tmp_path / "resnet18-cls.pth"
    torch.save(classifier.state_dict(), path)
    model = build("det:fasterrcnn_resnet18_fpn", backbone_checkpoint=path)
    body = model.backbone.body
    assert torch.equal(body.layer2[0].conv1.weight, classifier.layer2[0].conv1.weight)
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    # torchvision's default with backbone weights: the 3 deepest of 5 units train
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and body.layer4[1].conv2.weight.requires_grad
    everything = build("det:fasterrcnn_resnet18_fpn", backbone_checkpoint=path, trainable_backbone_layers=5)
    assert all(p.requires_grad for p in everything.backbone.parameters())


def test_no_weights_freeze_nothing_and_keep_batchnorm() -> None:
    model = build("det:fasterrcnn_resnet18_fpn")
    assert all(p.requires_grad for p in model.parameters())
    assert isinstance(model.backbone.body.bn1, nn.BatchNorm2d)


def test_zoo_layers_outside_the_returned_stages_are_frozen() -> None:
    """MobileNetV2's 1280-channel head conv feeds only the classifier: no gradient would ever reach it."""
    model = build("det:fasterrcnn_MobileNetV2_fpn", fpn_channels=32)
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(k.startswith("backbone.body.net.conv2.") for k in frozen)
    shallow = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32, returned_stages=[1, 2])
    assert not shallow.backbone.body.net.layer3[0].conv1.weight.requires_grad
    assert len(shallow.backbone(torch.zeros(1, 3, CANVAS, CANVAS))) == 3


def test_default_anchors_scale_with_min_size() -> None:
    small = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32).rpn.anchor_generator.sizes
    assert small == ((2.56,), (5.12,), (10.24,), (20.48,))  # 64 / 25 * 2**l, 3 stages + the pool level
    large = create_model("det:fasterrcnn_resnet8_fpn", num_classes=K, fpn_channels=32).rpn.anchor_generator.sizes
    assert large == ((32.0,), (64.0,), (128.0,), (256.0,))
    builder = create_model("det:fasterrcnn_mobilenet_v3_large_fpn", num_classes=K, representation_size=64)
    assert builder.rpn.anchor_generator.sizes == ((32.0, 64.0, 128.0, 256.0, 512.0),) * 3  # torchvision's at 800
    tiny_builder = build("det:fasterrcnn_mobilenet_v3_large_fpn").rpn.anchor_generator.sizes
    assert tiny_builder[0] == pytest.approx((2.56, 5.12, 10.24, 20.48, 40.96))
    explicit = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32, anchor_sizes=[4, 8, 16, 32])
    assert explicit.rpn.anchor_generator.sizes == ((4.0,), (8.0,), (16.0,), (32.0,))
    with pytest.raises(ValueError, match="anchor_sizes has 2 levels.*4 FPN levels"):
        build("det:fasterrcnn_resnet8_fpn", anchor_sizes=[4, 8])


def test_a_96_px_canvas_is_not_resized_when_min_and_max_size_are_96() -> None:
    model = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32, min_size=96, max_size=96).eval()
    batch, _ = model.transform(images(2, 96))
    assert batch.tensors.shape[-2:] == (96, 96)
    assert batch.image_sizes == [(96, 96), (96, 96)]


def test_transform_signature_tells_transforms_apart() -> None:
    a = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32)
    b = build("det:fasterrcnn_resnet18_fpn", fpn_channels=32)
    c = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32, min_size=32)
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert transform_signature(a) == transform_signature(b) == (64, 64, *imagenet, 32)
    assert transform_signature(a) != transform_signature(c)
    assert not is_detector(create_model("resnet8", num_classes=K))


def test_unknown_backbone_names_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown detector 'det:fasterrcnn_resnet9_fpn'.*det:fasterrcnn_resnet8_fpn"):
        create_model("det:fasterrcnn_resnet9_fpn", num_classes=K)
    with pytest.raises(ValueError, match="unknown detector"):
        create_model("det:retinanet_resnet8_fpn", num_classes=K)


def test_unknown_option_is_named_with_the_accepted_ones() -> None:
    accepted = r"no option 'min_sise'.*accepts:.*backbone_checkpoint.*min_size.*box_score_thresh"
    with pytest.raises(ValueError, match=accepted):
        create_model("det:fasterrcnn_resnet8_fpn", num_classes=K, min_sise=64)
    with pytest.raises(ValueError, match="fpn_channels is not supported"):
        create_model("det:fasterrcnn_resnet50_fpn", num_classes=K, fpn_channels=32)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        create_model("det:fasterrcnn_resnet8_fpn", num_classes=0)


def test_list_models_lists_the_detectors() -> None:
    names = list_models("det:*")
    assert names == list_detector_names()
    zoo = [f"det:fasterrcnn_{n}_fpn" for n in list_models()]
    builders = [
        "det:fasterrcnn_resnet50_fpn",
        "det:fasterrcnn_resnet50_fpn_v2",
        "det:fasterrcnn_mobilenet_v3_large_fpn",
    ]
    tv = ["det:fasterrcnn_resnet18_fpn", "det:fasterrcnn_resnet34_fpn", "det:fasterrcnn_resnet101_fpn"]
    assert set(names) == set(zoo) | set(builders) | set(tv)
    assert "det:fasterrcnn_wrn_40_2_fpn" in names and "det:fasterrcnn_resnet32x4_fpn" in names
    assert list_models("det:*wrn_40*") == ["det:fasterrcnn_wrn_40_1_fpn", "det:fasterrcnn_wrn_40_2_fpn"]
    assert not any(n.startswith("det:") for n in list_models())
    with pytest.raises(ValueError, match="reserved prefix"):
        register_model(lambda num_classes=1: nn.Linear(1, num_classes), name="det:mine")


def test_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"attempted download: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    for name in NAMES:
        build(name)


@pytest.mark.parametrize("backbone", list_models())
def test_every_zoo_network_makes_a_trainable_detector(backbone: str) -> None:
    """Stride-1 CIFAR stems, 3-5 stages, head-only layers: every zoo net trains, every trainable weight learns."""
    model = build(f"det:fasterrcnn_{backbone}_fpn", fpn_channels=16).train()
    losses = model(images(), targets())
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_detector_built_under_inference_mode_predicts() -> None:
    with torch.inference_mode():
        model = build("det:fasterrcnn_resnet8_fpn", fpn_channels=32).eval()
        assert len(model(images(1))[0]["boxes"]) > 0
