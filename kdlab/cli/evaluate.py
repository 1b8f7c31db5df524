"""``kdlab eval CONFIG --checkpoint PATH [--knn] [--linear-probe] [--manifold] [--corruptions [NAME ...]]
[--transfer SPEC ...] [--retrieval] [--json]``."""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from kdlab.cli.common import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on the evaluation split")
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="checkpoint of the network in model.*")
    p.add_argument(
        "--knn", action="store_true",
        help="weighted kNN accuracy on frozen embeddings (eval.knn_k); always on for label-free runs",
    )
    p.add_argument("--linear-probe", action="store_true", help="linear probe on frozen embeddings")
    p.add_argument(
        "--manifold", action="store_true",
        help="teacher-student CKA, kNN overlap, cosines (also of projection heads) and a t-SNE plot",
    )
    robustness = p.add_argument_group("what the student inherits (docs/robustness.md)")
    robustness.add_argument(
        "--corruptions", nargs="*", default=None, metavar="NAME",
        help="top-1 under the 15 common corruptions (Hendrycks & Dietterich) applied to the evaluation split; "
             "names narrow the set (default: all 15)",
    )
    robustness.add_argument(
        "--severities", nargs="+", default=None, metavar="S",
        help="corruption severities: 1 2 3, 1..5 or 1-5 (default: 1..5)",
    )
    robustness.add_argument(
        "--corruption-samples", type=int, default=None, metavar="N",
        help="corrupt a fixed random N images of the evaluation split (the same for every model; default: all)",
    )
    robustness.add_argument("--corruption-seed", type=int, default=0, help="seed of the corruptions' randomness (0)")
    robustness.add_argument(
        "--corruptions-from", default=None, metavar="DIR",
        help="a released corrupted set instead: CIFAR-10-C style .npy folder or ImageNet-C style tree",
    )
    robustness.add_argument(
        "--reference", action="append", default=[], metavar="RUN_DIR",
        help="score this run's network on the same corrupted images and report mCE relative to it (repeatable)",
    )
    robustness.add_argument(
        "--eval-set", nargs="+", action="extend", default=[], metavar="DIR",
        help="top-1 on other test sets of the same classes: folders of class folders (ImageNet-v2, -Sketch)",
    )
    robustness.add_argument(
        "--transfer", nargs="+", action="extend", default=[], metavar="SPEC",
        help="linear transfer of the frozen embedding to a dataset: NAME[:ROOT][,key=value...], e.g. digits",
    )
    robustness.add_argument(
        "--retrieval", action="store_true",
        help="each evaluation image queries the rest by embedding cosine: mAP and recall@1/5/10",
    )
    p.add_argument("--plot", default=None, help="where --manifold writes its PNG (default: beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled objects in checkpoints (trusted files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kdlab.engine.report_eval import evaluate_checkpoint

    cfg = config_from_args(args)
    cfg_eval = cfg.eval
    manifold = args.manifold or cfg_eval.manifold
    plot = args.plot or (str(Path(args.checkpoint).with_suffix("")) + "_manifold.png" if manifold else None)
    if plot is not None:  # before any evaluation: a device, pipe or folder there is one line, exit 2
        from kdlab.checkpoint_io import check_output_file

        check_output_file(plot, "--plot")
    result = evaluate_checkpoint(
        cfg,
        args.checkpoint,
        knn=args.knn or cfg_eval.knn,
        linear_probe=args.linear_probe or cfg_eval.linear_probe,
        manifold=manifold,
        plot_path=plot,
        unsafe_load=args.unsafe_load,
        inherit=inheritance_request(args),
    )
    if args.json:
        print(json.dumps(result))
    else:
        for line in _lines(result):
            print(line)
    return 0


def parse_severities(values: Optional[list[str]]) -> Optional[tuple[int, ...]]:
    """``["1", "3"]``, ``["1..5"]``, ``["1-5"]`` or ``["1,3,5"]`` -> severities (None: not given)."""
    from kdlab.config import ConfigError

    if values is None:
        return None
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            bounds = part.split("..") if ".." in part else part.split("-") if "-" in part[1:] else [part]
            try:
                numbers = [int(b) for b in bounds]
            except ValueError:
                raise ConfigError(f"--severities: {value!r} is not a severity, a list or a range like 1..5") from None
            low, high = numbers[0], numbers[-1]
            if len(numbers) > 2 or low > high:
                raise ConfigError(f"--severities: {value!r} is not a range like 1..5")
            out.extend(range(low, high + 1))
    return tuple(dict.fromkeys(out))


def inheritance_request(args: argparse.Namespace) -> Any:
    """The robustness / transfer / retrieval part of ``kdlab eval``'s flags (None when none is given)."""
    from kdlab.config import ConfigError
    from kdlab.engine.inheritance_eval import InheritanceRequest
    from kdlab.engine.robustness_eval import SEVERITIES, CorruptionRequest

    severities = parse_severities(args.severities)
    released = args.corruptions_from is not None
    if not released and args.corruptions is None and (severities is not None or args.corruption_samples is not None):
        raise ConfigError("--severities and --corruption-samples go with --corruptions")
    if released and args.corruption_samples is not None:
        raise ConfigError("--corruption-samples subsamples kdlab's own corruptions, not a --corruptions-from set")
    corruptions = None
    if args.corruptions is not None and not released:
        from kdlab.eval.corruptions import CORRUPTIONS

        corruptions = CorruptionRequest(
            names=tuple(args.corruptions) or CORRUPTIONS, severities=severities or SEVERITIES,
            samples=args.corruption_samples, seed=args.corruption_seed,
        )
    if args.reference and corruptions is None and not released and not args.eval_set:
        raise ConfigError("--reference compares corruption (or --eval-set) accuracy: add --corruptions")
    references = dict(reference_network(path, unsafe_load=args.unsafe_load) for path in args.reference)
    return InheritanceRequest(
        corruptions=corruptions, corruptions_from=args.corruptions_from,
        released_names=(tuple(args.corruptions) or None) if released and args.corruptions is not None else None,
        released_severities=severities or SEVERITIES, eval_sets=tuple(args.eval_set),
        transfer=tuple(args.transfer), retrieval=args.retrieval, references=references,
    )


def reference_network(path: str, *, unsafe_load: bool = False) -> tuple[str, Any]:
    """``--reference RUN_DIR`` (or a checkpoint file): its label and its network with its own input."""
    from pathlib import Path

    from kdlab.config import ConfigError
    from kdlab.deploy.student import load_student
    from kdlab.engine.input_adapt import InputSpec

    loaded = load_student(path, "last", unsafe_load=unsafe_load)
    if not loaded.config.distill.labels:
        raise ConfigError(f"--reference {path}: a label-free run has no trained classifier to compare top-1 with")
    facts = loaded.facts
    label = Path(path).name if Path(path).is_dir() else str(path)
    return label, (loaded.model, InputSpec.of(facts.in_chans, facts.image_size, facts.mean, facts.std))


#: in --json only: what produced the numbers (settings, chosen L2 weights, sizes)
_DETAIL_KEYS = ("corruption_settings", "transfer_details")
_KEY_WIDTH = 36


def _lines(result: dict[str, Any]) -> list[str]:
    """The result as aligned lines; nested results (per corruption, per spec) one line per entry."""
    flat: list[tuple[str, object]] = []
    for key, value in result.items():
        if key == "corruptions" and isinstance(value, dict):
            for name, by_severity in value.items():
                flat.append((f"corruption {name}", "  ".join(f"s{s} {v:.2f}" for s, v in by_severity.items())))
        elif key == "references" and isinstance(value, dict):
            for label, ref in value.items():
                for sub in ("clean_top1", "mean_corruption_top1"):
                    if sub in ref:
                        flat.append((f"reference {label} {sub}", ref[sub]))
        elif key in _DETAIL_KEYS:
            continue
        elif isinstance(value, dict):
            for sub, inner in value.items():
                if not isinstance(inner, (dict, list)):
                    flat.append((f"{key} {sub}", inner))
        else:
            flat.append((key, value))
    width = min(max(len(key) for key, _ in flat), _KEY_WIDTH) + 2
    return [f"{key:<{width}}{_format(key, value)}" for key, value in flat]


def _format(key: str, value: object) -> str:
    """Accuracies (percent) with 2 decimals; similarities and COCO AP fractions in [0, 1] with 4."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if "manifold_" in key or key.startswith("val_map") or "_l2" in key else f"{value:.2f}"
