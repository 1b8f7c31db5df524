"""``kdlab export``: the student alone, in a deployable format, checked, with a JSON of what it expects.

:func:`export_student` writes the student of a :class:`~kdlab.deploy.student.LoadedStudent`
(never the teacher, nor the method's adapters, heads or memory banks: those are not part of the
loaded network) as ONNX, TorchScript or safetensors, optionally with every convolution ->
BatchNorm pair folded first. The file is written under a temporary name, read back by its
runtime and compared with the PyTorch student (unfolded) at two batch sizes
(:mod:`kdlab.deploy.verify`), and only moved to its name when it matches within the relative
tolerance, so a file at the output path is always a verified one (an export that fails its check
is deleted unless ``keep_failed``). Then ``<file>.json`` is written beside it: the architecture,
input shape/dtype/layout and normalisation, class names, source checkpoint, sha256 of the file,
opset, folds, the measured difference and the library versions.
"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

import kdlab
from kdlab.checkpoint_io import check_output_file, file_sha256
from kdlab.deploy import formats
from kdlab.deploy.formats import EXTENSIONS, FORMATS, ExportError, require_extras
from kdlab.deploy.student import DEFAULT_CHECKPOINT, LoadedStudent, UnsupportedTaskError, load_student
from kdlab.deploy.verify import RELATIVE_TOLERANCE, VERIFY_BATCHES, Verification, verify_export
from kdlab.models.fold import fold_batchnorm as fold_network

#: version of the JSON written beside each export
METADATA_VERSION = 1
#: batch size the network is exported (traced) with: above 1, and unlike the checked sizes
EXPORT_BATCH = 2
#: images the BatchNorm folding finds its pairs on and checks itself with
FOLD_BATCH = 4


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_student` wrote and how it compared with the PyTorch student."""

    path: Path
    metadata_path: Optional[Path]  # None when a failed export was deleted
    format: str
    verification: Verification
    folded: int
    fold_note: str
    opset: Optional[int]
    metadata: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.verification.passed

    @property
    def kept(self) -> bool:
        """Whether the file is at :attr:`path` (always after a passed check)."""
        return self.metadata_path is not None


def load_for_export(path: str | Path, which: str = DEFAULT_CHECKPOINT, *, unsafe_load: bool = False) -> LoadedStudent:
    """:func:`~kdlab.deploy.student.load_student`, saying plainly which students cannot be exported."""
    try:
        return load_student(path, which, unsafe_load=unsafe_load)
    except UnsupportedTaskError as err:
        raise ExportError(f"{path}: {err.task} students are not exported yet (task {err.task!r} in its config); "
                          "kdlab export writes classification students") from None


def default_output(loaded: LoadedStudent, format: str) -> Path:
    """``RUN_DIR/export/student_<checkpoint>.<ext>`` (``student_best.onnx``), or an ``export/`` folder
    beside a checkpoint that is not in a run folder."""
    base = loaded.run_dir if loaded.run_dir is not None else loaded.checkpoint.parent
    return base / "export" / f"student_{loaded.checkpoint.stem}{EXTENSIONS[format]}"


def metadata_path_for(path: str | Path) -> Path:
    """The JSON beside an exported file: its full name plus ``.json`` (``student_best.onnx.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _check_request(format: str, opset: Optional[int], tolerance: float) -> None:
    if format not in FORMATS:
        raise ExportError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    if opset is not None and format != "onnx":
        raise ExportError(f"--opset {opset}: the opset applies to --format onnx only, not {format}")
    if opset is not None and opset < 7:
        raise ExportError(f"--opset {opset}: torch exports ONNX opsets 7 and later")
    if not tolerance > 0:
        raise ExportError(f"tolerance {tolerance}: must be positive")
    require_extras(format)


def _resolve_output(loaded: LoadedStudent, format: str, out: Optional[str | Path]) -> Path:
    if out is None:
        return default_output(loaded, format)
    folder = str(out).endswith(("/", os.sep))  # `--out deploy/`: a folder, made when missing
    out = Path(out)
    if folder or out.is_dir():
        return out / default_output(loaded, format).name
    if out.name.endswith(".json"):
        raise ExportError(f"--out {out}: that is where the metadata JSON goes; name the exported file")
    return out


def check_export_outputs(path: str | Path) -> None:
    """The exported file and its JSON (``<file>.json``) go to regular files or new paths, nothing else:
    a device, pipe, socket or folder there raises :class:`~kdlab.checkpoint_io.OutputPathError`."""
    check_output_file(path, "--out")
    check_output_file(metadata_path_for(path), "--out (its metadata JSON)")


def _model_section(loaded: LoadedStudent) -> dict[str, Any]:
    """What rebuilds the student network: name, classes and create_model kwargs."""
    model = loaded.config.model
    return {"name": str(model.name), "num_classes": int(model.num_classes or loaded.facts.num_classes),
            "kwargs": dict(model.kwargs)}


def _write(format: str, model: torch.nn.Module, loaded: LoadedStudent, path: Path, opset: Optional[int],
           folded: int) -> tuple[Optional[int], Optional[str]]:
    """Write ``model`` to ``path``; ``(opset, exporter)`` for ONNX, ``(None, None)`` otherwise."""
    example = loaded.example_input(EXPORT_BATCH, seed=0)
    if format == "onnx":
        return formats.write_onnx(model, example, path, opset)
    if format == "torchscript":
        formats.write_torchscript(model, example, path)
    else:
        header = formats.safetensors_header(_model_section(loaded), loaded.facts.to_dict(), folded)
        formats.write_safetensors(model, path, header)
    return None, None


def _versions(format: str) -> dict[str, str]:
    versions = {"kdlab": kdlab.__version__, "torch": torch.__version__}
    for name in formats.FORMAT_EXTRAS[format]:
        module = importlib.import_module(name)
        versions[name] = str(getattr(module, "__version__", "unknown"))
    return versions


def _channels(in_chans: int) -> str:
    if in_chans == 3:
        return "RGB images (channels in R, G, B order)"
    if in_chans == 1:
        return "single-channel (grey) images"
    return f"images of {in_chans} channels in the dataset's order"


def build_metadata(
    loaded: LoadedStudent,
    path: Path,
    format: str,
    verification: Verification,
    *,
    folded: int,
    fold_note: str,
    opset: Optional[int],
    exporter: Optional[str],
) -> dict[str, Any]:
    """The JSON beside an export: everything a deployment needs to feed the file and read its output."""
    facts = loaded.facts
    model = _model_section(loaded)
    shape = [formats.BATCH_AXIS_NAME, facts.in_chans, facts.image_size, facts.image_size]
    return {
        "kdlab_export": METADATA_VERSION,
        "format": format,
        "file": path.name,
        "sha256": file_sha256(path),
        "architecture": model["name"],
        "model_kwargs": model["kwargs"],
        "num_classes": model["num_classes"],
        "classes": list(facts.classes),
        "input": {
            "name": formats.INPUT_NAME,
            "shape": shape,
            "dynamic_axes": {"0": formats.BATCH_AXIS_NAME},
            "dtype": "float32",
            "layout": "NCHW",
            "pixel_range": [0.0, 1.0],
            "mean": list(facts.mean),
            "std": list(facts.std),
            "preprocessing": (
                f"{_channels(facts.in_chans)} at {facts.image_size}x{facts.image_size}, pixels / 255 into "
                "[0, 1], then (x - mean) / std per channel"
            ),
        },
        "output": {
            "name": formats.OUTPUT_NAME,
            "shape": [formats.BATCH_AXIS_NAME, model["num_classes"]],
            "meaning": "unnormalised class scores (softmax gives probabilities); column i is classes[i]",
        },
        "source": {
            "checkpoint": str(loaded.checkpoint.resolve()),
            "checkpoint_sha256": file_sha256(loaded.checkpoint),
            "run_dir": str(loaded.run_dir.resolve()) if loaded.run_dir is not None else None,
            "epoch": loaded.epoch,
        },
        "opset": opset,
        "exporter": exporter,
        "batchnorm_folded": folded,
        "batchnorm_fold_note": fold_note or None,
        "verification": verification.to_dict(),
        "versions": _versions(format),
    }


def _temporary_name(path: Path) -> Path:
    """A hidden name beside ``path`` that no other export uses, keeping its ending (exporters look at it).

    Not ``mkstemp``: that creates files readable by their owner only, and the exporters create the
    file themselves, with the usual permissions.
    """
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def _write_json(data: dict[str, Any], path: Path) -> None:
    check_output_file(path, "--out (its metadata JSON)")
    tmp = _temporary_name(path)
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_student(
    loaded: LoadedStudent,
    format: str,
    out: Optional[str | Path] = None,
    *,
    fold_batchnorm: bool = False,
    opset: Optional[int] = None,
    tolerance: float = RELATIVE_TOLERANCE,
    keep_failed: bool = False,
) -> ExportResult:
    """Write ``loaded``'s student as ``format`` (``onnx``, ``torchscript``, ``safetensors``), check it, describe it.

    ``out``: the file (default :func:`default_output`; an existing folder, or a path ending in ``/``,
    gets the default name in it).
    ``fold_batchnorm``: fold conv -> BatchNorm pairs first (the check still compares with the
    unfolded student). ``opset``: the ONNX opset (default: the exporter's). The result's
    :attr:`~ExportResult.passed` says whether the file matched within ``tolerance``; a file that
    did not is deleted (``metadata_path`` None) unless ``keep_failed``. Unusable requests and
    exporter failures raise :class:`~kdlab.deploy.formats.ExportError` (one line).
    """
    _check_request(format, opset, tolerance)
    path = _resolve_output(loaded, format, out)
    check_export_outputs(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    model, folded, fold_note = loaded.model, 0, ""
    if fold_batchnorm:
        fold = fold_network(loaded.model, loaded.example_input(FOLD_BATCH, seed=0))
        model, folded, fold_note = fold.model, fold.folded, fold.reason
    inputs = [loaded.example_input(batch, seed=1 + i) for i, batch in enumerate(VERIFY_BATCHES)]

    tmp = _temporary_name(path)
    try:
        written_opset, exporter = _write(format, model, loaded, tmp, opset, folded)
        verification = verify_export(tmp, format, loaded.model, inputs, tolerance=tolerance)
        if not (verification.passed or keep_failed):
            return ExportResult(path=path, metadata_path=None, format=format, verification=verification,
                                folded=folded, fold_note=fold_note, opset=written_opset, metadata={})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    metadata = build_metadata(loaded, path, format, verification, folded=folded, fold_note=fold_note,
                              opset=written_opset, exporter=exporter)
    metadata_path = metadata_path_for(path)
    _write_json(metadata, metadata_path)
    return ExportResult(path=path, metadata_path=metadata_path, format=format, verification=verification,
                        folded=folded, fold_note=fold_note, opset=written_opset, metadata=metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON beside an exported file (give the exported file or the JSON itself)."""
    path = Path(path)
    json_path = path if path.name.endswith(".json") else metadata_path_for(path)
    try:
        return json.loads(json_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{json_path}: no export metadata (kdlab export writes it beside the file)") from None


__all__ = [
    "ExportError",
    "ExportResult",
    "FORMATS",
    "default_output",
    "export_student",
    "load_for_export",
    "metadata_path_for",
    "read_metadata",
]
