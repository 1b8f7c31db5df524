"""``kdlab knn-index CONFIG [overrides] [--k 384] [--out PATH]``: the teacher-kNN index for data.sampler=knn."""

from __future__ import annotations

import argparse

from kdlab.cli.common import add_config_args, config_from_args


#: kdlab.engine.knn_index.DEFAULT_K, repeated so that building the CLI parser imports no torch
#: (every command pays for that import; tests/cli/test_cli_startup.py checks the two agree)
DEFAULT_K = 384


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "knn-index",
        help="embed the training set with the teacher and store each sample's nearest neighbours",
        description=(
            "Embeds the training set with the config's teacher (eval transform), L2-normalises, and writes each "
            "sample's top-K cosine neighbours (itself excluded) for data.sampler=knn. The file goes to --out, "
            "else to data.knn_index, else to <trainer.out_dir>/knn_index_<teacher>_<data>_k<K>.pt."
        ),
    )
    add_config_args(p)
    p.add_argument(
        "--k", type=int, default=DEFAULT_K, help=f"neighbours per sample (default {DEFAULT_K}; clipped to N-1)"
    )
    p.add_argument("--out", default=None, help="output file (default: data.knn_index or a fingerprint-keyed name); "
                                               "a regular file (replaced atomically) or a new path, nothing else")
    p.add_argument("--chunk-size", type=int, default=None, help="query rows per search step (default: ~256 MiB blocks)")
    p.add_argument(
        "--unsafe-load", action="store_true", help="allow pickled objects in the teacher checkpoint (trusted files)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.engine.knn_index import build_knn_index, check_index_output

    cfg = config_from_args(args)
    check_index_output(cfg, args.out)  # a device, pipe or folder at the output: one line, before any work
    info = build_knn_index(cfg, k=args.k, out=args.out, chunk_size=args.chunk_size, unsafe_load=args.unsafe_load)
    if cfg.trainer.progress == "none":
        print(info.path)
    return 0
