"""Writing a student network in each export format, and reading it back the way a deployment would.

* ``onnx``: ``torch.onnx.export`` into one self-contained file (weights inside, no ``.data``
  file), input ``input`` (N, C, H, W) and output ``logits`` (N, classes) with N dynamic. The
  default and any ``opset >= 18`` use torch's dynamo exporter; an older opset (for older
  runtimes) uses torch's legacy TorchScript-based exporter, because the dynamo exporter cannot
  convert below 18 (it leaves the model at 18 instead). The written file's opset is checked.
* ``torchscript``: ``torch.jit.trace`` then ``torch.jit.save``; read back with ``torch.jit.load``.
* ``safetensors``: the student's state dict, with what rebuilds the network (architecture,
  kwargs, classes, input facts, number of BatchNorms folded) as string metadata in the header;
  :func:`load_safetensors_student` rebuilds it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from kdlab.config import ConfigError

FORMATS = ("onnx", "torchscript", "safetensors")
#: file name endings of the exported files (``.pt`` is TorchScript's usual one; exports go to their own folder)
EXTENSIONS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
#: what each format needs beyond torch: the ``kdlab[export]`` extra
FORMAT_EXTRAS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "torchscript": (),
    "safetensors": ("safetensors",),
}
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS_NAME = "batch"
#: the lowest opset torch's dynamo ONNX exporter writes; lower ones go through the legacy exporter
DYNAMO_MIN_OPSET = 18
#: the header key that marks a kdlab student in a safetensors file
SAFETENSORS_MARK = "kdlab_student"

Runner = Callable[[torch.Tensor], torch.Tensor]


class ExportError(ConfigError):
    """An export that cannot be written or checked (missing extra, unsupported student, exporter failure)."""


def require_extras(format: str) -> None:
    """Raise one line naming ``pip install 'kdlab[export]'`` when ``format``'s optional packages are missing."""
    if format not in FORMAT_EXTRAS:
        raise ExportError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    missing = []
    for name in FORMAT_EXTRAS[format]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ExportError(f"--format {format} needs the optional package{plural} {', '.join(missing)}: "
                          "pip install 'kdlab[export]'")


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The student's forward output, which must be one tensor (the logits) to be exported."""
    with torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"the student's forward returns {type(out).__name__}, not one logits tensor: "
                          "it cannot be exported")
    return out


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch's deprecation notices for ``torch.jit`` (the user asked for TorchScript explicitly)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        yield


# --- ONNX ---------------------------------------------------------------------------------------


def onnx_opset(path: Path) -> Optional[int]:
    """The default-domain opset a written ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: Optional[int] = None) -> tuple[int, str]:
    """Export ``model`` (eval mode) to ``path``; ``(opset written, exporter used)``.

    ``example`` must have a batch size above 1 (torch specialises a dimension seen as 1).
    """
    import onnx

    if opset is None or opset >= DYNAMO_MIN_OPSET:
        exporter = "torch.onnx.export (dynamo)"
        batch = torch.export.Dim(BATCH_AXIS_NAME, min=1)
        options: dict[str, Any] = {"dynamo": True, "external_data": False, "dynamic_shapes": ({0: batch},)}
    else:
        exporter = "torch.onnx.export (legacy TorchScript-based)"
        axes = {INPUT_NAME: {0: BATCH_AXIS_NAME}, OUTPUT_NAME: {0: BATCH_AXIS_NAME}}
        options = {"dynamo": False, "dynamic_axes": axes}
    newest = int(onnx.defs.onnx_opset_version())
    if opset is not None and opset > newest:
        raise ExportError(f"--opset {opset}: the installed onnx {onnx.__version__} knows opsets up to {newest}")
    try:
        with warnings.catch_warnings(), _quiet_logger("onnxscript.version_converter"):
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message=r"The feature will be removed")
            torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, verbose=False, **options)
        onnx.checker.check_model(str(path))
    except Exception as err:  # the exporters raise many kinds; the user needs the first line
        hint = f" (try --opset {DYNAMO_MIN_OPSET - 1}: torch's legacy exporter)" if options["dynamo"] else ""
        raise ExportError(f"torch.onnx could not export the student: {first_line(err)}{hint}") from None
    written = onnx_opset(path)
    if written is None or (opset is not None and written != opset):
        raise ExportError(f"--opset {opset}: {exporter} could not convert the student to it and wrote opset "
                          f"{written} instead")
    return written, exporter


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Mute a library logger that reports a failure kdlab checks and reports itself (the opset conversion
    logs a whole traceback, then leaves the model at its opset; :func:`write_onnx` says so in one line)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def onnx_runner(path: Path) -> Runner:
    """Run the ONNX file with ONNX Runtime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.detach().cpu().numpy()})[0])

    return run


# --- TorchScript --------------------------------------------------------------------------------


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace ``model`` on ``example`` and save it (tracing works for every network whose forward is tensor ops)."""
    try:
        with quiet_torchscript(), torch.no_grad():
            traced = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(traced, str(path))
    except Exception as err:
        raise ExportError(f"torch.jit.trace could not trace the student: {first_line(err)}") from None


def torchscript_runner(path: Path) -> Runner:
    """Run the TorchScript file reloaded with ``torch.jit.load``."""
    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


# --- safetensors --------------------------------------------------------------------------------


def safetensors_header(model_section: dict[str, Any], facts: dict[str, Any], folded: int) -> dict[str, str]:
    """The string metadata that rebuilds the network: model name/classes/kwargs, input facts, folds."""
    return {
        SAFETENSORS_MARK: "1",
        "architecture": str(model_section["name"]),
        "model": json.dumps(model_section, sort_keys=True),
        "data_facts": json.dumps(facts, sort_keys=True),
        "batchnorm_folded": str(int(folded)),
    }


def write_safetensors(model: nn.Module, path: Path, header: dict[str, str]) -> None:
    """The state dict (contiguous copies: safetensors refuses shared or strided storage) and ``header``."""
    from safetensors.torch import save_file

    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in model.state_dict().items()}
    save_file(tensors, str(path), metadata=header)


def read_safetensors_header(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:
        raise ExportError(f"{path}: not a readable safetensors file: {first_line(err)}") from None


def load_safetensors_student(path: str | Path) -> nn.Module:
    """The student network of a ``kdlab export --format safetensors`` file, in eval mode on the CPU.

    The architecture is rebuilt from the header; a file written with ``--fold-batchnorm`` has its
    convolutions' BatchNorms folded away, so the fresh network is folded the same way (the pairs
    depend on the architecture only) before the weights are loaded, strictly.
    """
    from safetensors.torch import load_file

    from kdlab.config import from_dict
    from kdlab.deploy.student import DataFacts, build_student_network
    from kdlab.models.fold import fold_batchnorm

    header = read_safetensors_header(path)
    if SAFETENSORS_MARK not in header:
        raise ExportError(f"{path}: no kdlab student metadata in the safetensors header "
                          "(write it with kdlab export --format safetensors)")
    facts = DataFacts.from_dict(json.loads(header["data_facts"]))
    cfg = from_dict({"model": json.loads(header["model"])})
    model = build_student_network(cfg, facts).eval()
    folded = int(header.get("batchnorm_folded", "0"))
    if folded:
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(2, facts.in_chans, facts.image_size, facts.image_size, generator=generator)
        result = fold_batchnorm(model, example)
        if result.folded != folded:
            raise ExportError(f"{path}: the file has {folded} BatchNorms folded, a fresh {cfg.model.name} "
                              f"folds {result.folded} ({result.reason or 'different pairs'})")
        model = result.model
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as err:
        raise ExportError(f"{path}: the weights do not fit {cfg.model.name}: {first_line(err)}") from None
    return model.eval()


def safetensors_runner(path: Path) -> Runner:
    """Run a fresh network of the recorded architecture with the file's weights."""
    model = load_safetensors_student(path)

    def run(x: torch.Tensor) -> torch.Tensor:
        return logits_of(model, x)

    return run


def first_line(err: BaseException) -> str:
    """An exception as one line: its first non-empty line, or (for load_state_dict's multi-line report)
    all of it joined, cut at 400 characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = " ".join(lines) if lines[0].endswith(":") else lines[0]
    return text[:400]


__all__ = [
    "EXTENSIONS",
    "ExportError",
    "FORMATS",
    "FORMAT_EXTRAS",
    "load_safetensors_student",
    "read_safetensors_header",
    "require_extras",
]
