"""``kdlab list-configs [PATTERN]``: the recipes shipped inside the package.

Each name works wherever a CONFIG is taken (``kdlab train cifar100/kd/resnet32x4_resnet8x4``),
with or without a checkout; see :mod:`kdlab.config.recipes`.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list-configs",
        help="list the shipped recipes (each name works as a CONFIG: kdlab train NAME)",
        description="List the recipes shipped inside kdlab. Each name works wherever a CONFIG is taken "
                    "(kdlab train NAME, print-config NAME, ...); a file on disk of the same name wins.",
    )
    p.add_argument("pattern", nargs="?", help="case-insensitive substring (resnet8x4) or glob (cifar100/kd/*)")
    p.add_argument("-l", "--long", action="store_true",
                   help="also print each recipe's description and file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.config.recipes import recipe_description, recipe_names, recipe_path

    names = recipe_names(args.pattern)
    if not names:
        print(f"no recipe matches {args.pattern!r} (kdlab list-configs lists them all)", file=sys.stderr)
        return 1
    width = max(len(name) for name in names)
    for name in names:
        if args.long:
            path = recipe_path(name)
            print(f"{name:<{width}}  {recipe_description(path) or '-'}  [{path}]")
        else:
            print(name)
    return 0
