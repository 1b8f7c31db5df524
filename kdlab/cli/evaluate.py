"""``kdlab eval CONFIG --checkpoint PATH [--knn] [--linear-probe] [--manifold]``."""

from __future__ import annotations

import argparse
import json

from kdlab.cli.common import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on the evaluation split")
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="checkpoint of the network in model.*")
    p.add_argument("--knn", action="store_true", help="weighted kNN accuracy on frozen embeddings (eval.knn_k)")
    p.add_argument("--linear-probe", action="store_true", help="linear probe on frozen embeddings")
    p.add_argument("--manifold", action="store_true", help="teacher-student CKA, kNN overlap, cosines and a t-SNE plot")
    p.add_argument("--plot", default=None, help="where --manifold writes its PNG (default: beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled objects in checkpoints (trusted files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kdlab.engine.report_eval import evaluate_checkpoint

    cfg = config_from_args(args)
    cfg_eval = cfg.eval
    plot = args.plot or (str(Path(args.checkpoint).with_suffix("")) + "_manifold.png" if args.manifold else None)
    result = evaluate_checkpoint(
        cfg,
        args.checkpoint,
        knn=args.knn or cfg_eval.knn,
        linear_probe=args.linear_probe or cfg_eval.linear_probe,
        manifold=args.manifold or cfg_eval.manifold,
        plot_path=plot,
        unsafe_load=args.unsafe_load,
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<24} {value:.2f}" if isinstance(value, float) else f"{key:<24} {value}")
    return 0
