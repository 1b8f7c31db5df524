"""The frozen teacher: eval mode always, no gradients, BatchNorm untouched (and several of them: TeacherSet)."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from kdlab.models.features import Features
from kdlab.models.fold import fold_batchnorm
from kdlab.models.input_size import as_size, required_input_size, resize_images

_FOLD_EXAMPLE_ROWS = 8  # inputs that find and check the conv -> BatchNorm pairs on the first forward
_PRECISIONS = (None, "fp32", "bf16")


class FrozenTeacher(nn.Module):
    """Wraps a trained network so nothing can change it.

    - ``train(True)`` is ignored: the teacher stays in eval mode, so BatchNorm
      uses (and never updates) its running statistics and dropout is off.
    - every parameter has ``requires_grad=False``; forwards run under
      ``inference_mode`` and the outputs are copied out of it (a small copy: the
      losses may save them for the student's backward pass, which inference
      tensors refuse).
    - optional input re-normalisation: the data pipeline normalises with the
      dataset's mean/std; a teacher trained with other statistics (the shared
      third-party teachers use ImageNet's) gets ``x * scale + shift`` first.
    - optional input resizing: a teacher that only takes one resolution (a timm
      ViT/DeiT/Swin of fixed ``img_size``, a torchvision ViT:
      :func:`kdlab.models.input_size.required_input_size`), or the explicit
      ``input_size``, gets the batch resized to it (bilinear, antialiased when
      shrinking), after the re-normalisation; the student keeps its resolution.
      Teachers that take any resolution (CNNs) see the batch as it is.
    - speed (``fold_batchnorm``, default on): the forwards run a copy with every
      conv -> BatchNorm pair folded into the conv (:mod:`kdlab.models.fold`),
      built and checked against the original on the first batch; ``compile``
      additionally runs that copy through ``torch.compile``. ``model`` itself,
      its BatchNorm statistics included, is never changed.
    - precision: ``None`` runs under whatever autocast surrounds the call (the
      student's); ``"fp32"`` or ``"bf16"`` fixes the teacher's own, whatever the
      student trains in. A bf16 teacher's outputs are handed out as fp32.
    """

    def __init__(
        self,
        model: nn.Module,
        data_mean: Optional[Sequence[float]] = None,
        data_std: Optional[Sequence[float]] = None,
        teacher_mean: Optional[Sequence[float]] = None,
        teacher_std: Optional[Sequence[float]] = None,
        *,
        fold_batchnorm: bool = True,
        compile: bool = False,
        precision: Optional[str] = None,
        input_size: Optional[Union[int, Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        if precision not in _PRECISIONS:
            raise ValueError(f"teacher precision must be one of {sorted(p for p in _PRECISIONS if p)} or None, "
                             f"got {precision!r}")
        self.precision = precision
        self.model = model
        #: (H, W) every batch is resized to before the teacher sees it; None: the batch as it comes
        self.input_size: Optional[tuple[int, int]] = (
            as_size(input_size, "teacher input_size") if input_size is not None else required_input_size(model)
        )
        self.fold_batchnorm = fold_batchnorm
        self.compile_forward = compile
        #: what the first forward did about BatchNorm folding (for logs and tests)
        self.fold_note = "not built yet"
        # the network the forwards run (a folded, maybe compiled copy); kept out of the module
        # tree so it is never saved, hashed or listed among the teacher's parameters
        self.__dict__["_runner"] = None
        self.__dict__["_compiled"] = {}
        for p in self.model.parameters():
            p.requires_grad_(False)
        scale = shift = None
        if teacher_mean is not None or teacher_std is not None:
            if None in (data_mean, data_std, teacher_mean, teacher_std):
                raise ValueError("teacher.mean and teacher.std must be given together (and the data's mean/std known)")
            if not (len(data_mean) == len(data_std) == len(teacher_mean) == len(teacher_std)):  # type: ignore[arg-type]
                raise ValueError(
                    f"teacher mean/std ({len(teacher_mean)}/{len(teacher_std)} channels) do not match the data's "  # type: ignore[arg-type]
                    f"({len(data_mean)}/{len(data_std)} channels)"  # type: ignore[arg-type]
                )
            dm, ds = torch.tensor(data_mean), torch.tensor(data_std)
            tm, ts = torch.tensor(teacher_mean), torch.tensor(teacher_std)
            # x_t = (x * ds + dm - tm) / ts
            scale = (ds / ts).view(1, -1, 1, 1)
            shift = ((dm - tm) / ts).view(1, -1, 1, 1)
            if torch.equal(scale, torch.ones_like(scale)) and torch.equal(shift, torch.zeros_like(shift)):
                scale = shift = None  # the same statistics on both sides: nothing to do per batch
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":  # noqa: ARG002 - the teacher never trains
        return super().train(False)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "FrozenTeacher":
        super()._apply(fn, *args, **kwargs)
        runner = self.__dict__["_runner"]
        if runner is not None and runner is not self.model:
            runner._apply(fn, *args, **kwargs)
        self.__dict__["_compiled"] = {}  # compiled for the old device/layout
        return self

    @property
    def num_classes(self) -> Any:
        return getattr(self.model, "num_classes", None)

    @property
    def embedding_dim(self) -> Any:
        return getattr(self.model, "embedding_dim", None)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if self.input_size is not None and x.dim() == 4:
            x = resize_images(x, self.input_size)
        return x

    def _network(self, x: torch.Tensor) -> nn.Module:
        runner = self.__dict__["_runner"]
        if runner is None:
            runner = self.model
            if self.fold_batchnorm:
                # checked in fp32 (under a bf16 autocast the check would only measure bf16 rounding) and
                # outside inference mode (the folded weights must not become inference tensors)
                with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
                    result = fold_batchnorm(self.model, x[:_FOLD_EXAMPLE_ROWS].float())
                runner = result.model
                self.fold_note = (
                    f"{result.folded} BatchNorm layer(s) folded into their convolutions"
                    if result.folded else f"BatchNorm not folded: {result.reason}"
                )
            else:
                self.fold_note = "BatchNorm folding off (teacher.fold_batchnorm=false)"
            self.__dict__["_runner"] = runner
        return runner

    def _call(self, method: str, x: torch.Tensor) -> Any:
        x = self._prepare(x)
        if self.__dict__["_runner"] is None and torch.is_inference_mode_enabled():
            with torch.inference_mode(False):  # the folded weights must be ordinary tensors
                self._network(x.clone())
        runner = self._network(x)
        fn: Callable[[torch.Tensor], Any] = getattr(runner, method)
        if self.compile_forward:
            compiled = self.__dict__["_compiled"]
            if method not in compiled:
                # freezing: the weights are constants (the teacher never changes), so inductor may
                # fold and pre-pack them for the device's convolution kernels
                compiled[method] = torch.compile(fn, options={"freezing": True})
            fn = compiled[method]
        with self._precision_context(x):
            if torch.is_inference_mode_enabled():
                out = fn(x)
                return _as_float32(out) if self.precision == "bf16" else out
            with torch.inference_mode():
                out = fn(x)
        return _out_of_inference_mode(out, float32=self.precision == "bf16")

    def _precision_context(self, x: torch.Tensor) -> Any:
        if self.precision is None:
            return contextlib.nullcontext()
        if self.precision == "fp32":
            return torch.autocast(x.device.type, enabled=False)
        return torch.autocast(x.device.type, dtype=torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call("forward", x)

    def forward_all(self, x: torch.Tensor) -> Features:
        return self._call("forward_all", x)


class TeacherSet(nn.Module):
    """Several frozen teachers by key (``teachers:``), and the weighted mean of their logits.

    Each member is a :class:`FrozenTeacher` of its own (its own input re-normalisation and resizing,
    precision and BatchNorm folding); like them, the set stays in eval mode whatever its parent asks.
    The Distiller runs only the members its terms read, each once per batch; ``forward`` is what a
    ``teacher: mean`` term sees: ``sum_k w_k * logits_k`` over the members of positive weight
    (``mean_keys``), in fp32.

    Args:
        teachers: key -> frozen teacher, in the config's order (index i of a term's ``teacher:`` is the i-th).
        weights: key -> share in the mean (normalised to sum 1 here); default equal shares.
    """

    def __init__(self, teachers: Mapping[str, nn.Module], weights: Optional[Mapping[str, float]] = None) -> None:
        super().__init__()
        if not teachers:
            raise ValueError("a TeacherSet needs at least one teacher")
        self.names: tuple[str, ...] = tuple(teachers)
        # a ModuleList, not a ModuleDict: teacher keys need not be valid module names
        self.members = nn.ModuleList(teachers.values())
        raw = {key: 1.0 for key in self.names} if weights is None else {key: float(weights[key]) for key in self.names}
        if set(raw) != set(self.names) or any(w < 0 for w in raw.values()) or not sum(raw.values()) > 0:
            raise ValueError(f"TeacherSet weights {dict(raw)} must be >= 0 with a positive sum, one per teacher")
        total = sum(raw.values())
        self.weights: dict[str, float] = {key: value / total for key, value in raw.items()}
        #: the members ``teacher: mean`` averages (a weight of 0 leaves a teacher out of the mean)
        self.mean_keys: tuple[str, ...] = tuple(key for key in self.names if self.weights[key] > 0)
        super().train(False)

    def train(self, mode: bool = True) -> "TeacherSet":  # noqa: ARG002 - teachers never train
        return super().train(False)

    def __getitem__(self, key: Union[str, int]) -> nn.Module:
        """The member of that key (or index)."""
        index = key if isinstance(key, int) else self.names.index(key)
        return self.members[index]

    def items(self) -> list[tuple[str, nn.Module]]:
        return list(zip(self.names, self.members))

    @property
    def num_classes(self) -> Any:
        """The members' class count when they all agree (else None)."""
        counts = {getattr(m, "num_classes", None) for m in self.members}
        return counts.pop() if len(counts) == 1 else None

    @property
    def embedding_dim(self) -> Any:
        return None  # the mean is of logits only

    def mean_logits(self, logits: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``sum_k w_k * logits[k]`` over ``mean_keys``, in order, in fp32."""
        total: Optional[torch.Tensor] = None
        for key in self.mean_keys:
            part = logits[key].float() * self.weights[key]
            total = part if total is None else total + part
        assert total is not None  # mean_keys is never empty: the weights have a positive sum
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean_logits({key: self[key](x) for key in self.mean_keys})

    def forward_all(self, x: torch.Tensor) -> Features:
        """The mean's features: logits only (there is no mean of feature maps)."""
        return Features(logits=self(x), embedding=None, stages=[], preact_stages=[])  # type: ignore[arg-type]


def build_teachers(
    cfg: Any, num_classes: int, in_chans: int, data_mean: Any, data_std: Any, *, unsafe_load: bool = False
) -> TeacherSet:
    """The frozen teachers of ``teachers:``, each built exactly as ``teacher.*`` would build it alone."""
    from kdlab.config import ConfigError
    from kdlab.config.teacher_source import single_teacher_view, teacher_weights
    from kdlab.engine.builders import build_teacher

    members: dict[str, nn.Module] = {}
    for key in cfg.teachers:
        try:
            teacher = build_teacher(
                single_teacher_view(cfg, key), num_classes, in_chans, data_mean, data_std, unsafe_load=unsafe_load
            )
        except ConfigError as err:
            raise ConfigError(f"teachers.{key}: {err}") from None
        if teacher is None:
            raise ConfigError(f"teachers.{key}: set its name and checkpoint (a teacher must be trained)")
        members[key] = teacher
    return TeacherSet(members, teacher_weights(cfg))


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(_map_tensors(v, fn) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: _map_tensors(getattr(value, f.name), fn) for f in dataclasses.fields(value)}
        )
    return value


def _as_float32(value: Any) -> Any:
    """``value`` with its half-precision tensors as fp32."""
    return _map_tensors(value, lambda t: t.float() if t.is_floating_point() else t)


def _out_of_inference_mode(value: Any, *, float32: bool = False) -> Any:
    """Normal (autograd-usable, saveable) copies of the inference tensors in ``value`` (as fp32 if asked)."""
    if float32:
        # the fp32 cast is the copy out of inference mode (a copy of an fp32 tensor would be a second one)
        return _map_tensors(value, lambda t: t.clone() if t.dtype == torch.float32 or not t.is_floating_point()
                            else t.float())
    return _map_tensors(value, lambda t: t.clone())
