"""``kdlab train CONFIG [overrides] [--resume PATH|auto]``."""

from __future__ import annotations

import argparse

from kdlab.cli.common import add_config_args, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network (supervised or distilled) from a config")
    add_config_args(p)
    p.add_argument("--resume", metavar="PATH|auto",
                   help="continue from a checkpoint; auto: out_dir's newest loadable one (last.pt, then keep_last's)")
    p.add_argument("--resume-force", action="store_true", help="resume even if the config changed")
    p.add_argument(
        "--overwrite", action="store_true",
        help="start over in a trainer.out_dir that holds a run (its checkpoints, metrics and summary are deleted)",
    )
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled objects in checkpoints (trusted files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.engine.trainer import Trainer

    cfg = config_from_args(args)
    result = Trainer(cfg, unsafe_load=args.unsafe_load).fit(
        resume=args.resume, resume_force=args.resume_force, overwrite=args.overwrite
    )
    return result.exit_code
