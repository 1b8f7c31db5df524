"""timm models behind the :class:`FeatureModel` contract (``timm:<name>``); timm is optional.

Built with ``timm.create_model(name, pretrained=False, ...)``: nothing is ever
downloaded (``pretrained=True`` is refused); trained weights come in through
``checkpoint=`` (a timm ``.safetensors``, ``.pth`` or ``.bin`` state_dict loads
directly, see :mod:`kdlab.models.checkpoint`).

Features come from timm's own API in one pass: ``forward_intermediates`` gives
the stage maps and the final features, ``forward_head`` the logits, and a hook
on the classifier reads its input (the embedding). Models without
``forward_intermediates`` fall back to forward hooks on the modules listed in
timm's ``feature_info``. timm blocks apply their activation inside the block,
so ``preact_stages`` equals ``stages``.

Which ``feature_info`` entries are stages (:func:`default_stage_indices`):

- hierarchical networks (ResNets, ConvNeXt, EfficientNet, Swin, ...): the last
  entry at each stride >= 4 (timm also lists the stride-2 stem);
- isotropic networks, whose every block is an entry at one stride (ViT, DeiT,
  Mixer): four blocks evenly spaced, ending with the last (blocks 3, 6, 9 and 12
  of a 12-block ViT; every block of a ViT with four or fewer). A ViT stage is the block's patch tokens reshaped to
  (B, C, H, W); its class / distillation / register tokens are kept apart
  (:meth:`TimmFeatureModel.forward_tokens`), so stage-based terms (FitNets, AT,
  ...) treat a ViT like a CNN whose stages all share one stride.

The option ``stage_indices=[...]`` (a kdlab option, not passed to timm) picks
other entries: indices into ``feature_info``, i.e. block indices for a ViT.

A network whose patch embedding only takes one resolution (a ViT without
``dynamic_img_size``, Swin) reports it as :attr:`TimmFeatureModel.input_size`;
feeding it another size is an error naming both, and a frozen teacher resizes
its inputs to it (:class:`kdlab.engine.teacher.FrozenTeacher`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional

import torch
from torch import nn

from kdlab.models.adapter_base import LibraryFeatureModel, module_name_of, primary_output
from kdlab.models.capture import ActivationRecorder
from kdlab.models.features import Features
from kdlab.models.registry import OptionalDependencyError, unknown_name_error

#: feature_info entries below this stride (the stem) are not stages
MIN_STAGE_STRIDE = 4
#: how many blocks of an isotropic network (ViT: every block at one stride) are its stages
ISOTROPIC_STAGES = 4
#: timm.create_model arguments that load or fetch weights: kdlab loads weights only through checkpoint=
REFUSED_OPTIONS = ("pretrained", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")


def import_timm(for_what: str) -> ModuleType:
    """``import timm`` or an :class:`OptionalDependencyError` (an ImportError) saying how to install it."""
    try:
        import timm
    except ImportError as err:
        raise OptionalDependencyError(for_what, "timm", "timm") from err
    return timm


def _feature_info(model: nn.Module) -> list[dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    return [dict(entry) for entry in info]  # a list of dicts, or timm's FeatureInfo (iterates as dicts)


def default_stage_indices(info: Sequence[dict[str, Any]]) -> list[int]:
    """The ``feature_info`` entries that are stages (see the module docstring)."""
    eligible = [i for i, entry in enumerate(info) if entry.get("reduction", 0) >= MIN_STAGE_STRIDE]
    if len(info) > 1 and len({entry.get("reduction") for entry in info}) == 1:
        eligible = list(range(len(info)))  # isotropic at any stride (a ViT with 2x2 patches has no stem to skip)
    strides = {info[i].get("reduction") for i in eligible}
    if len(strides) == 1 and len(eligible) > 1:  # isotropic: every block at one stride
        n = len(eligible)
        if n <= ISOTROPIC_STAGES:
            return eligible
        return [eligible[(k + 1) * n // ISOTROPIC_STAGES - 1] for k in range(ISOTROPIC_STAGES)]
    last_at: dict[Any, int] = {}
    for i in eligible:
        last_at[info[i].get("reduction")] = i
    return sorted(last_at.values())


def checked_stage_indices(indices: Sequence[int], count: int, name: str) -> list[int]:
    """User-given ``stage_indices`` (negative counts from the end), increasing and within ``feature_info``."""
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) or not indices:
        raise ValueError(f"{name}: stage_indices must be a non-empty list of feature_info indices, got {indices!r}")
    out = []
    for index in indices:
        if not isinstance(index, int) or isinstance(index, bool) or not -count <= index < count:
            raise ValueError(
                f"{name}: stage_indices={list(indices)} has {index!r}, outside the model's {count} feature levels "
                f"(feature_info indices 0..{count - 1}, or negative from the end)"
            )
        out.append(index % count)
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"{name}: stage_indices={list(indices)} must name each level once, shallow to deep")
    return out


def fixed_input_size(model: nn.Module) -> Optional[tuple[int, int]]:
    """(H, W) that ``model``'s patch embedding insists on, or None when any resolution works.

    timm's ``PatchEmbed`` checks the size when built with ``strict_img_size`` and the
    model is not ``dynamic_img_size`` (ViT/DeiT by default, Swin); CNNs have none.
    """
    from timm.layers import PatchEmbed

    if getattr(model, "dynamic_img_size", False):
        return None
    for module in model.modules():
        if isinstance(module, PatchEmbed):
            size = getattr(module, "img_size", None)
            if not getattr(module, "strict_img_size", False) or getattr(module, "dynamic_img_pad", False):
                return None
            return None if size is None else (int(size[0]), int(size[1]))
    return None


def _input_channels(model: nn.Module, default: int) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return default


def _prefix_names(net: Any, count: int) -> tuple[str, ...]:
    """Names of a token model's prefix tokens, in their order: ``cls``, ``dist``, then ``reg0``, ``reg1``, ..."""
    names = []
    if getattr(net, "cls_token", None) is not None:
        names.append("cls")
    if getattr(net, "dist_token", None) is not None:
        names.append("dist")
    names += [f"reg{i}" for i in range(int(getattr(net, "num_reg_tokens", 0) or 0))]
    if len(names) != count:  # a family laid out otherwise: name them by position
        names = [f"prefix{i}" for i in range(count)]
    return tuple(names)


@dataclass
class TokenFeatures:
    """One forward pass of a token model (ViT, DeiT): the usual features plus the tokens kept apart.

    The stages in ``features`` hold only patch tokens; what a distillation method may
    want besides (DeiT's distillation token, the class token) is here.
    """

    features: Features
    #: per stage, the block's prefix tokens (B, P, D), in the order of ``prefix_names``
    stage_prefix_tokens: list[torch.Tensor]
    #: the tokens after the final norm, (B, P + H*W, D): what the head pools
    final_tokens: torch.Tensor
    #: ``("cls",)`` for a ViT, ``("cls", "dist")`` for a distilled DeiT, ``()`` without prefix tokens
    prefix_names: tuple[str, ...]

    def prefix_token(self, name: str) -> torch.Tensor:
        """The final (normalised) prefix token ``name``, (B, D)."""
        if name not in self.prefix_names:
            raise KeyError(f"no prefix token {name!r}; this model has {list(self.prefix_names) or 'none'}")
        return self.final_tokens[:, self.prefix_names.index(name)]

    @property
    def class_token(self) -> Optional[torch.Tensor]:
        return self.prefix_token("cls") if "cls" in self.prefix_names else None

    @property
    def distillation_token(self) -> Optional[torch.Tensor]:
        return self.prefix_token("dist") if "dist" in self.prefix_names else None


class TimmFeatureModel(LibraryFeatureModel):
    """Wraps a timm model (attribute ``model``) and exposes logits, embedding and stages.

    Args:
        model: a timm network.
        stage_indices: ``feature_info`` entries to expose as stages (default: :func:`default_stage_indices`).
        name: how errors name the model (default: timm's architecture name).
    """

    def __init__(
        self, model: nn.Module, stage_indices: Optional[Sequence[int]] = None, name: Optional[str] = None
    ) -> None:
        net: Any = model  # timm's API (get_classifier, forward_head, ...) is not typed on nn.Module
        cfg_size = tuple(getattr(net, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))
        fixed = _fixed_size_or_none(model)
        channels = _input_channels(model, int(cfg_size[0]))
        probe = (channels, *(fixed or (int(cfg_size[1]), int(cfg_size[2]))))
        super().__init__(model, probe_shape=probe)  # type: ignore[arg-type]
        self.name = name or f"timm:{getattr(net, 'pretrained_cfg', {}).get('architecture', type(net).__name__)}"
        #: the one (H, W) the network accepts, or None when any resolution works
        self.input_size: Optional[tuple[int, int]] = fixed
        self.feature_info = _feature_info(net)
        if stage_indices is None:
            self.stage_indices = default_stage_indices(self.feature_info)
        else:
            self.stage_indices = checked_stage_indices(stage_indices, len(self.feature_info), self.name)
        self.stage_module_names = [
            str(self.feature_info[i]["module"]) for i in self.stage_indices if "module" in self.feature_info[i]
        ]
        self.num_classes = int(getattr(net, "num_classes", 0))
        in_features = getattr(self._head(), "in_features", None)
        self.embedding_dim = int(in_features or getattr(net, "head_hidden_size", None) or net.num_features)
        #: a ViT-like model: stages are patch-token maps, with prefix tokens (class, distillation) kept apart
        self.is_token_model = hasattr(net, "num_prefix_tokens") and _accepts(net, "return_prefix_tokens")
        self.prefix_names = _prefix_names(net, int(net.num_prefix_tokens)) if self.is_token_model else ()

    @property
    def timm_model(self) -> Any:
        """The wrapped model, typed loosely: timm's methods are not part of ``nn.Module``."""
        return self.model

    @property
    def stage_channels(self) -> list[int]:
        """From ``feature_info`` where it lists every stage's channels (no dry run), else measured."""
        entries = [self.feature_info[i] for i in self.stage_indices] if self.feature_info else []
        if entries and all("num_chs" in entry for entry in entries):
            return [int(entry["num_chs"]) for entry in entries]
        return super().stage_channels

    def _head(self) -> nn.Module:
        """The class-token head: timm's distilled DeiT returns ``(head, head_dist)``; the first is the head."""
        classifier = self.timm_model.get_classifier()
        return classifier[0] if isinstance(classifier, tuple) else classifier

    def get_classifier(self) -> nn.Module:
        return self._head()

    @property
    def has_distillation_token(self) -> bool:
        """A distilled DeiT: a distillation token with its own head (timm's ``set_distilled_training``)."""
        return "dist" in self.prefix_names and hasattr(self.timm_model, "set_distilled_training")

    def set_distilled_training(self, enable: bool = True) -> None:
        """Train the two heads of a distilled DeiT apart (DeiT's distillation; the ``deit`` term sets it).

        In training mode the logits are then the class token's head and
        :attr:`Features.distillation_logits` the distillation token's; in eval mode both stay
        timm's average of the two heads, as DeiT evaluates.
        """
        if not self.has_distillation_token:
            raise ValueError(f"{self.name} has no distillation token (a distilled DeiT has one: deit_*_distilled_*)")
        self.timm_model.set_distilled_training(enable)

    def reset_classifier(self, num_classes: int) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = embedding model), got {num_classes}")
        self.timm_model.reset_classifier(num_classes)
        self.num_classes = num_classes

    def check_input(self, x: torch.Tensor) -> None:
        """One line naming the sizes when a fixed-resolution network gets another (timm would only assert)."""
        if self.input_size is not None and x.dim() == 4 and tuple(x.shape[-2:]) != self.input_size:
            h, w = self.input_size
            raise ValueError(
                f"{self.name} takes {h}x{w} images (its img_size) but got {x.shape[-2]}x{x.shape[-1]}: build it "
                f"with img_size={x.shape[-2]} (model kwargs) or dynamic_img_size=True; a teacher's inputs are "
                "resized to its size automatically"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return primary_output(self.model(x))

    def forward_all(self, x: torch.Tensor) -> Features:
        if self.is_token_model:
            return self.forward_tokens(x).features
        return self._forward_maps(x)

    def forward_tokens(self, x: torch.Tensor) -> TokenFeatures:
        """:meth:`forward_all` of a token model, with its class/distillation tokens (one forward pass)."""
        if not self.is_token_model:
            raise ValueError(f"{self.name} is not a token model (ViT/DeiT): it has no class or distillation tokens")
        self.check_input(x)
        net = self.timm_model
        with_prefix = bool(self.prefix_names)
        recorder = self._classifier_recorder()
        with recorder.recording():
            final, taken = net.forward_intermediates(
                x, indices=self.stage_indices, output_fmt="NCHW", return_prefix_tokens=with_prefix
            )
            head = net.forward_head(final)
        # a distilled DeiT in distilled training returns (class head, distillation head); else one tensor
        two_heads = isinstance(head, tuple) and len(head) == 2 and self.has_distillation_token
        logits = head[0] if two_heads else primary_output(head)
        if with_prefix:
            stages = [spatial for spatial, _ in taken]
            prefixes = [prefix for _, prefix in taken]
        else:
            stages = list(taken)
            prefixes = [final[:, :0] for _ in taken]
        features = Features(
            logits=logits, embedding=self._embedding(recorder, final), stages=stages, preact_stages=list(stages),
            distillation_logits=head[1] if two_heads else None,
        )
        return TokenFeatures(features, prefixes, final, self.prefix_names)

    def _classifier_recorder(self) -> ActivationRecorder:
        name = module_name_of(self.timm_model, self._head())
        # a single classifier's input is the embedding; a distilled DeiT's logits mix two heads instead
        single = name and not isinstance(self.timm_model.get_classifier(), tuple)
        return ActivationRecorder(self.timm_model, input_of=[name] if single else [])

    def _embedding(self, recorder: ActivationRecorder, final: Optional[torch.Tensor]) -> torch.Tensor:
        if recorder.input_of:
            return torch.flatten(recorder.inputs[recorder.input_of[0]], 1)
        if final is not None:  # timm's own pre-logits (a distilled DeiT: the mean of class and distillation token)
            return torch.flatten(self.timm_model.forward_head(final, pre_logits=True), 1)
        raise ValueError(f"cannot locate the classifier of {self.name} to read its embedding")

    def _forward_maps(self, x: torch.Tensor) -> Features:
        self.check_input(x)
        net = self.timm_model
        final = None
        if hasattr(net, "forward_intermediates"):
            recorder = self._classifier_recorder()
            with recorder.recording():
                final, stages = net.forward_intermediates(x, indices=self.stage_indices, output_fmt="NCHW")
                logits = primary_output(net.forward_head(final))
        else:
            classifier = self._classifier_recorder()
            recorder = ActivationRecorder(net, output_of=self.stage_module_names, input_of=classifier.input_of)
            with recorder.recording():
                logits = primary_output(net(x))
            stages = [recorder.outputs[name] for name in self.stage_module_names]
        stages = list(stages)
        embedding = self._embedding(recorder, final)
        return Features(logits=logits, embedding=embedding, stages=stages, preact_stages=list(stages))


def _accepts(net: Any, parameter: str) -> bool:
    method = getattr(net, "forward_intermediates", None)
    if method is None:
        return False
    try:
        return parameter in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _fixed_size_or_none(model: nn.Module) -> Optional[tuple[int, int]]:
    """:func:`fixed_input_size`, and None for stand-ins when timm is absent (tests of the adapter alone)."""
    try:
        return fixed_input_size(model)
    except ImportError:
        return None


def create_timm_model(name: str, num_classes: int, **kwargs: Any) -> TimmFeatureModel:
    """``timm:<name>`` with random weights, wrapped in :class:`TimmFeatureModel`.

    ``stage_indices`` is kdlab's (see the module docstring); every other option goes to
    ``timm.create_model`` (``img_size=32``, ``patch_size=8``, ``in_chans=1``, ``drop_path_rate=0.1``, ...).
    """
    timm = import_timm(f"timm:{name}")
    for refused in REFUSED_OPTIONS:
        if kwargs.get(refused):
            raise ValueError(
                f"timm:{name}: {refused}={kwargs[refused]!r} is refused: kdlab never downloads weights at run time; "
                "save them to a local file (timm's model.safetensors / pytorch_model.bin, or "
                "torch.save(model.state_dict())) and pass it with checkpoint= (model.checkpoint / teacher.checkpoint)"
            )
        kwargs.pop(refused, None)
    stage_indices = kwargs.pop("stage_indices", None)
    if not timm.is_model(name):
        raise unknown_name_error(name, timm.list_models(), "timm model")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return TimmFeatureModel(model, stage_indices=stage_indices, name=f"timm:{name}")
