"""``kdlab list-models`` and ``kdlab list-methods``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list-models", help="list registered model names")
    p.add_argument("pattern", nargs="?", help="substring or glob filter")
    p.set_defaults(func=run_models)
    p = sub.add_parser("list-methods", help="list loss terms, their parameters and papers")
    p.set_defaults(func=run_methods)


def run_models(args: argparse.Namespace) -> int:
    from kdlab.models import list_models

    for name in list_models(args.pattern):
        print(name)
    print("tv:<name> (any torchvision classification model), timm:<name> (when timm is installed), "
          "det:fasterrcnn_<backbone>_fpn (detectors: list-models 'det:*')")
    return 0


def run_methods(args: argparse.Namespace) -> int:  # noqa: ARG001
    from kdlab.methods.base import all_terms
    from kdlab.methods.build import term_parameters

    for cls in all_terms():
        name = cls.name
        params = ", ".join(f"{k}={v!r}" for k, v in term_parameters(cls).items()) or "-"
        needs = []
        if cls.needs_teacher:
            needs.append("teacher")
        if cls.needs_labels:
            needs.append("labels")
        if cls.multiview:
            needs.append(f"views={cls.multiview}")
        if cls.task != "classification":
            needs.append(f"task: {cls.task}")
        print(f"{name:<14} params: {params}")
        print(f"{'':<14} needs: {', '.join(needs) or 'nothing'}; paper: {cls.paper}")
    return 0
