"""``create_model("det:fasterrcnn_<backbone>_fpn", num_classes=K, ...)``: torchvision Faster R-CNN detectors.

The result is a stock ``torchvision.models.detection.FasterRCNN`` (transform,
backbone, rpn, roi_heads are torchvision's own classes), so torchvision's
training and inference contract holds and a distiller can call the parts one
by one. Nothing is downloaded: weights come from local files only.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from kdlab.models.detection.anchors import default_anchor_sizes, make_anchor_generator, scale_anchor_sizes
from kdlab.models.detection.backbones import (
    BuiltBackbone,
    build_torchvision_resnet_backbone,
    build_zoo_backbone,
    batchnorm_frozen,
    default_trainable_layers,
)
from kdlab.models.detection.freezing import (
    freeze_batchnorm,
    freeze_mobilenet_layers,
    freeze_resnet_layers,
    mobilenet_stage_count,
)
from kdlab.models.detection.names import DetectorSpec, parse_detector_name
from kdlab.models.detection.options import DetectorOptions, parse_options
from kdlab.models.detection.weights import load_classifier_weights, load_detector_weights

PathLike = str | os.PathLike[str]
#: RoIAlign output and sampling as torchvision's FPN detectors use them
ROI_OUTPUT_SIZE = 7
ROI_SAMPLING_RATIO = 2
#: the box head width torchvision's builders use
BUILDER_REPRESENTATION_SIZE = 1024


def create_detector(
    name: str,
    num_classes: int,
    checkpoint: PathLike | None = None,
    *,
    unsafe_load: bool = False,
    **kwargs: Any,
) -> FasterRCNN:
    """Build a Faster R-CNN detector by name; optionally load backbone or whole-detector weights.

    Args:
        name: ``det:fasterrcnn_<backbone>_fpn`` with a zoo backbone (``list_models()``, e.g. ``resnet8``,
            ``wrn_40_2``, ``MobileNetV2``) or ``resnet18``/``resnet34``/``resnet101``; or one of torchvision's
            builders ``det:fasterrcnn_resnet50_fpn``, ``det:fasterrcnn_resnet50_fpn_v2``,
            ``det:fasterrcnn_mobilenet_v3_large_fpn`` (their layout matches torchvision's COCO files).
        num_classes: K object classes; the predictor gets K + 1 outputs (background is class 0), labels are 1..K.
        checkpoint: a whole detector: kdlab's training checkpoint (``{"model": state_dict, ...}``), a plain
            state dict or torchvision's COCO weight file (``num_classes=90``). It restores weights only:
            pass the options that built the saved detector.
        unsafe_load: allow files that need full unpickling (trusted files only).

    Keyword options (all optional):
        backbone_checkpoint: a CLASSIFICATION file loaded into the backbone network before it is wrapped
            (zoo: any format kdlab reads, e.g. akamaster's CIFAR ResNets with ``backbone_kwargs={"shortcut": "A"}``;
            torchvision: a torchvision state dict such as ``resnet50-0676ba61.pth``). Its classifier is ignored.
        backbone_kwargs: options of the backbone constructor (zoo constructor or ``torchvision.models.get_model``).
        returned_stages: stages feeding the FPN, counted from 1 (torchvision's ``returned_layers``); default:
            every stage of a zoo net, layers 1-4 of a ResNet. A CIFAR net's stage 1 has stride 1: at 800 px it
            is a full-resolution FPN level, so ``[2, 3]`` is cheaper on large canvases.
        fpn_channels: FPN width (256).
        trainable_backbone_layers: deepest backbone units that train (torchvision's semantics for torchvision
            backbones: 0-5 for ResNets, 0-6 for MobileNetV3; zoo nets: 0 to their stage count). Default: all
            without backbone weights, torchvision's 3 with them (zoo nets: all). An explicit value always applies.
        freeze_batchnorm: None: FrozenBatchNorm2d in the backbone iff ``backbone_checkpoint`` is given (as
            torchvision with pretrained backbones); True/False forces it.
        representation_size: width of the TwoMLPHead box head (1024).
        min_size, max_size: GeneralizedRCNNTransform resizing (800, 1333); ``min_size=max_size=canvas`` keeps a
            square canvas at its size.
        image_mean, image_std: normalisation (ImageNet's).
        size_divisible: padding multiple of the batched images (32).
        anchor_sizes: one size (or a tuple of sizes) per FPN level, the max-pool level included. None:
            torchvision's anchors scaled by ``min_size / 800``, i.e. ``min_size / 25 * 2**l`` at level l
            (32..512 at 800 px), so small canvases get small anchors.
        aspect_ratios: anchor aspect ratios for every level, or one tuple per level ((0.5, 1.0, 2.0)).
        rpn_pre_nms_top_n_train/test, rpn_post_nms_top_n_train/test, rpn_batch_size_per_image,
        box_batch_size_per_image, box_detections_per_img, box_score_thresh, box_nms_thresh, rpn_nms_thresh,
        rpn_score_thresh, rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_positive_fraction, box_fg_iou_thresh,
        box_bg_iou_thresh, box_positive_fraction: passed to FasterRCNN unchanged (torchvision's defaults).

    Returns:
        A ``torchvision.models.detection.FasterRCNN`` with ``num_classes = K`` and ``kdlab_name = name`` set.

    Raises:
        ValueError: unknown name (with close matches) or option (listing the accepted ones), bad values.
        CheckpointMismatchError: a weights file that does not fit, naming the file and the keys.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"a detector needs num_classes >= 1 object classes (background is added), got {num_classes!r}")
    spec = parse_detector_name(name)
    options = parse_options(kwargs)
    if spec.kind == "builder":
        model = _from_torchvision_builder(spec, num_classes, options, unsafe=unsafe_load)
    else:
        model = _assemble(spec, num_classes, options, unsafe=unsafe_load)
    model.num_classes = num_classes
    model.kdlab_name = spec.name
    if checkpoint is not None:
        load_detector_weights(model, checkpoint, unsafe=unsafe_load)
    return model


def _assemble(spec: DetectorSpec, num_classes: int, options: DetectorOptions, *, unsafe: bool) -> FasterRCNN:
    """A kdlab backbone + FPN with torchvision's RPN and RoI heads."""
    if spec.kind == "zoo":
        backbone: BuiltBackbone = build_zoo_backbone(spec.backbone, options, unsafe=unsafe)
    else:
        backbone = build_torchvision_resnet_backbone(spec.backbone, options, unsafe=unsafe)
    sizes = options.anchor_sizes or default_anchor_sizes(options.min_size, backbone.num_levels)
    roi_pool = MultiScaleRoIAlign(
        backbone.featmap_names, output_size=ROI_OUTPUT_SIZE, sampling_ratio=ROI_SAMPLING_RATIO
    )
    channels = backbone.module.out_channels
    return FasterRCNN(
        backbone.module,
        num_classes=None,
        rpn_anchor_generator=make_anchor_generator(sizes, options.aspect_ratios, backbone.num_levels),
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(channels * ROI_OUTPUT_SIZE**2, options.representation_size),
        box_predictor=FastRCNNPredictor(options.representation_size, num_classes + 1),
        **options.transform_kwargs(),
        **options.sampling,
    )


def _from_torchvision_builder(
    spec: DetectorSpec, num_classes: int, options: DetectorOptions, *, unsafe: bool
) -> FasterRCNN:
    """torchvision's own builder (random weights), then kdlab's options applied to its stock parts."""
    import torchvision.models
    import torchvision.models.detection as detection

    fixed = options.non_default("backbone_kwargs", "returned_stages", "fpn_channels")
    if fixed:
        raise ValueError(
            f"{spec.name} is torchvision's fixed architecture (the layout of its COCO files); "
            f"option {', '.join(fixed)} is not supported there"
        )
    builder = getattr(detection, spec.builder or "")
    model: FasterRCNN = builder(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,
        **options.transform_kwargs(),
        **options.sampling,
    )
    body = model.backbone.body
    is_mobilenet = spec.backbone.startswith("mobilenet")
    if options.backbone_checkpoint is not None:
        # load into the classifier torchvision wraps, then move its weights into the (identically named) body
        net = torchvision.models.get_model(spec.backbone, weights=None)
        load_classifier_weights(net, options.backbone_checkpoint, f"torchvision {spec.backbone!r}", unsafe=unsafe)
        source = (net.features if is_mobilenet else net).state_dict()
        body.load_state_dict({k: source[k] for k in body.state_dict()})
    if batchnorm_frozen(options):
        freeze_batchnorm(body)
    if is_mobilenet:
        freeze_mobilenet_layers(body, default_trainable_layers(options, mobilenet_stage_count(body)))
    else:
        freeze_resnet_layers(body, default_trainable_layers(options, 5))
    if options.representation_size != BUILDER_REPRESENTATION_SIZE:
        _resize_box_head(model, options.representation_size, num_classes + 1)
    _set_anchors(model, options)
    return model


def _resize_box_head(model: FasterRCNN, width: int, outputs: int) -> None:
    """A box head (and predictor) of ``width`` in place of the builder's 1024, of the same kind."""
    heads = model.roi_heads
    channels = model.backbone.out_channels
    if isinstance(heads.box_head, FastRCNNConvFCHead):  # v2: four convs then one fc
        convs = [m for m in heads.box_head.modules() if isinstance(m, nn.Conv2d)]
        heads.box_head = FastRCNNConvFCHead(
            (channels, ROI_OUTPUT_SIZE, ROI_OUTPUT_SIZE),
            [c.out_channels for c in convs],
            [width],
            norm_layer=nn.BatchNorm2d,
        )
    else:
        heads.box_head = TwoMLPHead(channels * ROI_OUTPUT_SIZE**2, width)
    heads.box_predictor = FastRCNNPredictor(width, outputs)


def _set_anchors(model: FasterRCNN, options: DetectorOptions) -> None:
    """The builder's anchors scaled to ``min_size`` (or the given ones); a new RPN head if the count changes."""
    rpn = model.rpn
    current = rpn.anchor_generator
    levels = len(current.sizes)
    sizes = options.anchor_sizes or scale_anchor_sizes(current.sizes, options.min_size)
    generator = make_anchor_generator(sizes, options.aspect_ratios, levels)
    rpn.anchor_generator = generator
    wanted = generator.num_anchors_per_location()[0]
    head = rpn.head
    if head.cls_logits.out_channels != wanted:
        rpn.head = RPNHead(head.cls_logits.in_channels, wanted, conv_depth=len(head.conv))
