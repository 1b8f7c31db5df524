"""torchvision classification models behind the :class:`FeatureModel` contract (``tv:<name>``).

Built with ``torchvision.models.get_model(name, weights=None, ...)``: nothing is
ever downloaded; trained weights come in through ``checkpoint=`` (a plain
torchvision state_dict loads directly, see :mod:`kdlab.models.checkpoint`).

Features are recorded by forward hooks registered only during
``forward_all``, on the one unmodified model, in its one forward pass. (An FX
feature extractor would be a second, traced copy of the graph that has to be
rebuilt after ``reset_classifier`` and cannot see a pre-activation that an
``inplace=True`` ReLU overwrites.) Stage boundaries: :mod:`kdlab.models.stage_plan`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdlab.models.adapter_base import LibraryFeatureModel, primary_output
from kdlab.models.capture import ActivationRecorder
from kdlab.models.features import Features, make_classifier
from kdlab.models.registry import unknown_name_error
from kdlab.models.stage_plan import StagePlan, resnet_plan, search_plan, swin_plan

#: torchvision ImageNet models expect 224 px; the dry run that finds stages uses it
PROBE_SIZE = 224


def torchvision_model_names() -> list[str]:
    """torchvision's classification models (not detection/segmentation/video)."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def find_classifier(model: nn.Module, num_classes: int) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` with ``num_classes`` outputs: the layer producing the logits."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            found = (name, module)
    if found is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear with {num_classes} outputs: kdlab's torchvision adapter "
            "needs a classifier ending in a linear layer (convolutional heads such as SqueezeNet's are unsupported)"
        )
    return found


class TorchvisionFeatureModel(LibraryFeatureModel):
    """Wraps a torchvision classifier (attribute ``model``) and exposes logits, embedding and stages."""

    def __init__(self, model: nn.Module, num_classes: int, probe_size: int = PROBE_SIZE) -> None:
        super().__init__(model, probe_shape=(3, probe_size, probe_size))
        self.classifier_name, classifier = find_classifier(model, num_classes)
        self.num_classes = num_classes
        self.embedding_dim = classifier.in_features
        self._plan: StagePlan | None = _known_plan(model)

    def stage_plan(self) -> StagePlan:
        """The stage modules; found by a dry run (once) for families without a fixed plan."""
        if self._plan is None:
            reference = next(self.model.parameters())
            probe = torch.zeros(1, *self.probe_shape, device=reference.device, dtype=reference.dtype)
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    self._plan = search_plan(self.model, probe, exclude=self.classifier_name)
            finally:
                self.model.train(was_training)
        return self._plan

    def forward_all(self, x: torch.Tensor) -> Features:
        plan = self.stage_plan()
        preact_names = [name for name in plan.preact_inputs if name is not None]
        recorder = ActivationRecorder(
            self.model, output_of=plan.stage_modules, input_of=[self.classifier_name, *preact_names]
        )
        with recorder.recording():
            logits = primary_output(self.model(x))
        stages = [recorder.outputs[name] for name in plan.stage_modules]
        if plan.channels_last:
            stages = [stage.permute(0, 3, 1, 2) for stage in stages]
        preacts = [recorder.inputs[pre] if pre is not None else stage for pre, stage in zip(plan.preact_inputs, stages)]
        embedding = torch.flatten(recorder.inputs[self.classifier_name], 1)
        return Features(logits=logits, embedding=embedding, stages=stages, preact_stages=preacts)

    def get_classifier(self) -> nn.Module:
        return self.model.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        parent_name, _, child = self.classifier_name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        setattr(parent, child, make_classifier(self.embedding_dim, num_classes, like=self.model))
        self.num_classes = num_classes


def _known_plan(model: nn.Module) -> StagePlan | None:
    """The fixed plan of a family that has one; None means: find the stages by a dry run."""
    from torchvision.models import ResNet, SwinTransformer

    if isinstance(model, ResNet):
        return resnet_plan(model)
    if isinstance(model, SwinTransformer):
        return swin_plan(model)
    return None


def create_torchvision_model(name: str, num_classes: int, **kwargs: Any) -> TorchvisionFeatureModel:
    """``tv:<name>`` with random weights, wrapped in :class:`TorchvisionFeatureModel`."""
    import torchvision.models

    names = torchvision_model_names()
    if name not in names:
        raise unknown_name_error(name, names, "torchvision model")
    in_chans = kwargs.pop("in_chans", 3)
    if in_chans != 3:
        raise ValueError(f"tv:{name} takes 3-channel images; in_chans={in_chans} is only supported by zoo models")
    for forbidden in ("weights", "pretrained"):
        if forbidden in kwargs:
            raise ValueError(
                f"tv:{name}: {forbidden}= is not accepted (kdlab never downloads weights); "
                "pass a local file with checkpoint= instead"
            )
    # with weights=None torchvision accepts num_classes=0 only for some families: build with 1 and reset
    model = torchvision.models.get_model(name, weights=None, num_classes=max(num_classes, 1), **kwargs)
    adapter = TorchvisionFeatureModel(model, num_classes=max(num_classes, 1))
    if num_classes == 0:
        adapter.reset_classifier(0)
    return adapter
