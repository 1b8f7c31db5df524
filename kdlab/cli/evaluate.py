"""``kdlab eval CONFIG --checkpoint PATH [--knn] [--linear-probe] [--manifold]``."""

from __future__ import annotations

import argparse
import json

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
    result = evaluate_checkpoint(
        cfg,
        args.checkpoint,
        knn=args.knn or cfg_eval.knn,
        linear_probe=args.linear_probe or cfg_eval.linear_probe,
        manifold=manifold,
        plot_path=plot,
        unsafe_load=args.unsafe_load,
    )
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(key) for key in result) + 2
        for key, value in result.items():
            print(f"{key:<{width}}{_format(key, value)}")
    return 0


def _format(key: str, value: object) -> str:
    """Accuracies (percent) with 2 decimals; similarities and COCO AP fractions in [0, 1] with 4."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if "manifold_" in key or key.startswith("val_map") else f"{value:.2f}"
