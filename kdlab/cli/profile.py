"""``kdlab profile CONFIG|RUN_DIR [overrides...] [--json] [--threads N] [--batch-size N] [--evaluate] ...``."""

from __future__ import annotations

import argparse
import json

#: the defaults of kdlab.deploy.measure.TimingSettings, repeated here so that building the parser does
#: not import torch (a test keeps them equal)
DEFAULTS = {"threads": 1, "warmup": 3, "repeats": 20, "max_seconds": 5.0, "batch_size": 64}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="the student beside its teacher: parameters, MACs, size, CPU latency, top-1",
        description=(
            "Measure the distilled student and its teacher side by side on the CPU: parameters, multiply-"
            "accumulates per image (torch.utils.flop_counter, FLOPs / 2), size of the state dict (fp32 and "
            "fp16, MB = 10^6 bytes), latency at batch 1 and at --batch-size (median and quartiles after "
            "warm-up, at --threads threads), images/s, and each one's top-1 from its run. A RUN_DIR (or a "
            "checkpoint in one) profiles the trained student and writes profile.json into the run folder; "
            "a CONFIG profiles the configured architectures with fresh weights (no top-1). See docs/profile.md."
        ),
    )
    p.add_argument("path", metavar="CONFIG|RUN_DIR", help="a YAML config, a kdlab run folder or a checkpoint in one")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of a CONFIG, e.g. teacher.name=resnet20")
    p.add_argument("--json", action="store_true", help="print the profile as one JSON object (what profile.json holds)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of a RUN_DIR is the student (default best)")
    p.add_argument("--threads", type=int, default=DEFAULTS["threads"],
                   help=f"CPU threads for the latency forwards (default {DEFAULTS['threads']}; restored afterwards)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help=f"the larger batch, for latency and images/s (default {DEFAULTS['batch_size']})")
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"],
                   help=f"untimed forwards before each measurement (default {DEFAULTS['warmup']})")
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"],
                   help=f"timed forwards per measurement (default {DEFAULTS['repeats']}; "
                        "fewer once --max-seconds is spent)")
    p.add_argument("--max-seconds", type=float, default=DEFAULTS["max_seconds"],
                   help="time cap of one measurement, at least 3 forwards are timed "
                        f"(default {DEFAULTS['max_seconds']:g})")
    p.add_argument("--evaluate", action="store_true",
                   help="measure both top-1s on the config's evaluation split (CPU) instead of reading the runs")
    p.add_argument("--no-write", action="store_true", help="do not write profile.json into the run folder")
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled objects in checkpoints (trusted files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kdlab.deploy.measure import TimingSettings
    from kdlab.deploy.profile import check_profile_output, profile_path, write_profile
    from kdlab.deploy.profile_text import to_text

    settings = TimingSettings(threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                              max_seconds=args.max_seconds, batch_size=args.batch_size)
    settings.validate()
    if not args.no_write:
        check_profile_output(args.path)
    profile = profile_path(args.path, args.overrides, which=args.checkpoint, settings=settings,
                           evaluate=args.evaluate, unsafe_load=args.unsafe_load)
    run_dir = profile["source"].get("run_dir")
    written = write_profile(profile, run_dir) if run_dir and not args.no_write else None
    if args.json:
        print(json.dumps(profile, indent=2))
    else:
        print(to_text(profile), end="")
        if written is not None:
            print(f"wrote {written}")
    return 0
