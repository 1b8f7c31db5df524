"""``kdlab export RUN_DIR|CHECKPOINT --format onnx|torchscript|safetensors [--out PATH] [--fold-batchnorm]
[--opset N]``: the student alone, checked against PyTorch (:mod:`kdlab.deploy.export`)."""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2
FORMAT_CHOICES = ("onnx", "torchscript", "safetensors")  # kdlab.deploy.formats.FORMATS, without importing torch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the trained student alone as ONNX, TorchScript or safetensors, checked against PyTorch",
        description=(
            "Write the student of a run folder (its best checkpoint; --checkpoint last for the last) or of a kdlab "
            "checkpoint file alone - no teacher, no adapters, heads or memory banks of the method - with a JSON "
            "beside it (<file>.json: input shape, normalisation, class names, source, sha256, the check). The "
            "file is run right after writing (ONNX with onnxruntime on the CPU, TorchScript with torch.jit.load, "
            "safetensors in a fresh network) at batch sizes 1 and 3 and must equal the PyTorch student within "
            "1e-4 relative (max |diff| / max |PyTorch output|); otherwise the command prints the difference, "
            "deletes the file and exits with 2. The batch dimension is dynamic."
        ),
    )
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT", help="a kdlab run folder or a checkpoint kdlab train wrote")
    p.add_argument("--format", required=True, choices=FORMAT_CHOICES, help="what to write")
    p.add_argument("--out", metavar="PATH",
                   help="the exported file (a folder: the default name in it); default RUN_DIR/export/"
                        "student_<checkpoint>.<onnx|pt|safetensors>")
    p.add_argument("--fold-batchnorm", action="store_true",
                   help="fold each convolution -> BatchNorm pair into the convolution first (checked too)")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset (default: torch's; below 18 uses torch's legacy exporter)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of a RUN_DIR (default best; last.pt when the run never evaluated)")
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled objects in the checkpoint (trusted files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.deploy.export import export_student, load_for_export
    from kdlab.deploy.formats import require_extras

    require_extras(args.format)  # before loading anything: the missing extra is the first thing to say
    _check_out(args.out)
    loaded = load_for_export(args.source, args.checkpoint, unsafe_load=args.unsafe_load)
    result = export_student(loaded, args.format, args.out, fold_batchnorm=args.fold_batchnorm, opset=args.opset)
    check = f"check: {result.verification.summary()}"
    if not result.passed:
        print(check)
        print(f"kdlab export: error: the {args.format} export of {loaded.checkpoint} differs from the PyTorch "
              f"student (max rel diff {result.verification.max_rel:.3g} > {result.verification.tolerance:g}, "
              f"max abs diff {result.verification.max_abs:.3g}); nothing was written to {result.path}",
              file=sys.stderr)
        return EXIT_USAGE
    epoch = f"epoch {loaded.epoch}, " if loaded.epoch is not None else ""
    opset = f" (opset {result.opset})" if result.opset is not None else ""
    print(f"exported the {loaded.architecture} student ({epoch}{loaded.checkpoint}) as {args.format}{opset}: "
          f"{result.path}")
    if args.fold_batchnorm:
        print(f"batchnorm folded: {result.folded}" + (f" ({result.fold_note})" if result.fold_note else ""))
    print(f"metadata: {result.metadata_path}")
    print(check)
    return 0


def _check_out(out: str | None) -> None:
    """``--out`` names a folder (the default name goes in it), a regular file or a new path; anything else
    (a device, a pipe, a socket) is refused in one line before the checkpoint is read."""
    import os
    from pathlib import Path

    from kdlab.checkpoint_io import check_output_folder
    from kdlab.deploy.export import check_export_outputs

    if out is None:
        return
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        check_output_folder(out, "--out")
    else:
        check_export_outputs(out)
