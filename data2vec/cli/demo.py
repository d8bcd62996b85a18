"""data2vec demo [--out DIR] [--force] [key=value ...]"""

from __future__ import annotations

import argparse

from data2vec.demo import DEMO_PRESET, run_demo

HELP = "pretrain on Fashion-MNIST and compare linear probes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--preset", default=DEMO_PRESET)
    p.add_argument("--force", action="store_true", help="overwrite a previous demo run")
    p.add_argument("--probe-train", type=int, default=20000, help="training images for the probes (0: all 60000)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, args.preset, args.overrides, probe_train=args.probe_train, force=args.force,
             progress=not args.no_progress)
    return 0
