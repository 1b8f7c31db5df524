"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from kdlab.config import Config, load_config


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("config", nargs=None if required else "?", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. trainer.epochs=5")


def add_override_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. data.name=cifar10")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None), args.overrides)
