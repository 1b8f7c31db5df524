"""``kdlab data info|prepare [data.* overrides]``."""

from __future__ import annotations

import argparse
import json

from kdlab.cli.common import add_override_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets and build the fast-path cache")
    inner = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    info = inner.add_parser("info", help="sample and class counts per split, without decoding images")
    add_override_args(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=run_info)
    prepare = inner.add_parser("prepare", help="decode once into the fast-path uint8 cache")
    add_override_args(prepare)
    prepare.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.set_defaults(func=run_prepare)
    make = inner.add_parser(
        "make-detection",
        help="write a multi-object detection set (COCO format) from a classification source",
        description="Pastes 1-4 whole images of SOURCE (an ImageFolder folder or zip with train/ and test/, or "
        "the embedded `digits`) per canvas on backgrounds made from its own images; train canvases from its train "
        "split, test canvases from its test split; exact boxes, deterministic from --seed. OUT gets the COCO 2017 "
        "layout, so `data.name=coco data.root=OUT` trains on it. See docs/detection-data.md.",
    )
    make.add_argument("source", help="ImageFolder folder or zip (train/<class>/..., test/<class>/...), or digits")
    make.add_argument("out", help="output folder (new or empty)")
    make.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    make.add_argument("--train", type=int, default=2000, help="training canvases (default 2000)")
    make.add_argument("--test", type=int, default=500, help="test canvases (default 500)")
    make.add_argument("--canvas", type=int, default=96, help="canvas side in pixels (default 96)")
    make.add_argument("--min-objects", type=int, default=1, help="objects per canvas, at least (default 1)")
    make.add_argument("--max-objects", type=int, default=4, help="objects per canvas, at most (default 4)")
    make.add_argument("--min-size", type=int, help="smallest object side in pixels (default canvas x 20/96)")
    make.add_argument("--max-size", type=int, help="largest object side in pixels (default canvas x 56/96)")
    make.add_argument("--max-overlap", type=float, default=0.3, help="largest IoU between two objects (default 0.3)")
    make.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    make.add_argument("--json", action="store_true", help="print the summary as JSON")
    make.set_defaults(func=run_make_detection)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _data_config(args: argparse.Namespace):
    from kdlab.config import ConfigError, load_config

    bad = [o for o in args.overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"`kdlab data` takes only data.* overrides, got {', '.join(bad)}")
    return load_config(None, args.overrides).data


def run_info(args: argparse.Namespace) -> int:
    from kdlab.data import dataset_info

    info = dataset_info(_data_config(args))
    if args.json:
        print(json.dumps(info))
    else:
        for split, counts in info["splits"].items():
            print(f"{split:<6} {counts['samples']:>8} samples  {counts['classes']:>5} classes")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from kdlab.data import prepare_cache

    report = prepare_cache(_data_config(args), progress=not args.json)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        for key, value in report.items():
            print(f"{key:<20} {value}")
    return 0


def run_make_detection(args: argparse.Namespace) -> int:
    from kdlab.data.detection import MakeDetectionOptions, make_detection_dataset

    options = MakeDetectionOptions(
        seed=args.seed, train=args.train, test=args.test, canvas=args.canvas, min_objects=args.min_objects,
        max_objects=args.max_objects, min_size=args.min_size, max_size=args.max_size, max_overlap=args.max_overlap,
    )
    summary = make_detection_dataset(args.source, args.out, options, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['train_canvases']} train canvases ({summary['train_objects']} objects) and "
              f"{summary['test_canvases']} test canvases ({summary['test_objects']} objects) of "
              f"{len(summary['classes'])} classes to {args.out}")
    return 0
