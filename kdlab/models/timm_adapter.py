"""timm models behind the :class:`FeatureModel` contract (``timm:<name>``); timm is optional.

Built with ``timm.create_model(name, pretrained=False, ...)`` (never downloads).
Features come from timm's own API in one pass: ``forward_intermediates`` gives
the stage maps and the final features, ``forward_head`` the logits, and a hook
on the classifier reads its input (the embedding). Models without
``forward_intermediates`` fall back to forward hooks on the modules listed in
timm's ``feature_info``. Stages are the ``feature_info`` entries at strides >= 4
(timm also lists the stride-2 stem). timm blocks apply their activation inside
the block, so ``preact_stages`` equals ``stages``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn

from kdlab.models.adapter_base import LibraryFeatureModel, module_name_of, primary_output
from kdlab.models.capture import ActivationRecorder
from kdlab.models.features import Features
from kdlab.models.registry import unknown_name_error

#: feature_info entries below this stride (the stem) are not stages
MIN_STAGE_STRIDE = 4


def import_timm(for_what: str) -> ModuleType:
    """``import timm`` or an ImportError saying how to install it."""
    try:
        import timm
    except ImportError as err:
        raise ImportError(
            f"{for_what} needs the optional dependency timm, which is not installed: "
            "pip install 'kdlab[timm]' (or pip install timm)"
        ) from err
    return timm


def _feature_info(model: nn.Module) -> list[dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    return [dict(entry) for entry in info]  # a list of dicts, or timm's FeatureInfo (iterates as dicts)


class TimmFeatureModel(LibraryFeatureModel):
    """Wraps a timm model (attribute ``model``) and exposes logits, embedding and stages."""

    def __init__(self, model: nn.Module) -> None:
        net: Any = model  # timm's API (get_classifier, forward_head, ...) is not typed on nn.Module
        size = tuple(getattr(net, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))
        super().__init__(model, probe_shape=size)  # type: ignore[arg-type]
        info = _feature_info(net)
        self.stage_indices = [i for i, entry in enumerate(info) if entry.get("reduction", 0) >= MIN_STAGE_STRIDE]
        self.stage_module_names = [str(info[i]["module"]) for i in self.stage_indices if "module" in info[i]]
        self.num_classes = int(getattr(net, "num_classes", 0))
        in_features = getattr(net.get_classifier(), "in_features", None)
        self.embedding_dim = int(in_features or getattr(net, "head_hidden_size", None) or net.num_features)

    @property
    def timm_model(self) -> Any:
        """The wrapped model, typed loosely: timm's methods are not part of ``nn.Module``."""
        return self.model

    def get_classifier(self) -> nn.Module:
        return self.timm_model.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = embedding model), got {num_classes}")
        self.timm_model.reset_classifier(num_classes)
        self.num_classes = num_classes

    def forward_all(self, x: torch.Tensor) -> Features:
        net = self.timm_model
        classifier_name = module_name_of(net, net.get_classifier())
        watch = [classifier_name] if classifier_name else []
        final = None
        if hasattr(net, "forward_intermediates"):
            recorder = ActivationRecorder(net, input_of=watch)
            with recorder.recording():
                final, stages = net.forward_intermediates(x, indices=self.stage_indices, output_fmt="NCHW")
                logits = net.forward_head(final)
        else:
            recorder = ActivationRecorder(net, output_of=self.stage_module_names, input_of=watch)
            with recorder.recording():
                logits = primary_output(net(x))
            stages = [recorder.outputs[name] for name in self.stage_module_names]
        if classifier_name and classifier_name in recorder.inputs:
            embedding = torch.flatten(recorder.inputs[classifier_name], 1)
        elif final is not None:  # a classifier outside the module tree: re-run only the small pooling head
            embedding = torch.flatten(net.forward_head(final, pre_logits=True), 1)
        else:
            raise ValueError(f"cannot locate the classifier of {type(net).__name__} to read its embedding")
        stages = list(stages)
        return Features(logits=logits, embedding=embedding, stages=stages, preact_stages=list(stages))


def create_timm_model(name: str, num_classes: int, **kwargs: Any) -> TimmFeatureModel:
    """``timm:<name>`` with random weights, wrapped in :class:`TimmFeatureModel`."""
    timm = import_timm(f"timm:{name}")
    for forbidden in ("pretrained", "pretrained_cfg_overlay"):
        if kwargs.get(forbidden):
            raise ValueError(
                f"timm:{name}: {forbidden}= is not accepted (kdlab never downloads weights); "
                "pass a local file with checkpoint= instead"
            )
        kwargs.pop(forbidden, None)
    if not timm.is_model(name):
        raise unknown_name_error(name, timm.list_models(), "timm model")
    return TimmFeatureModel(timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs))
