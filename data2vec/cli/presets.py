"""data2vec presets [show NAME]"""

from __future__ import annotations

import argparse
import json

from data2vec.config import to_dict
from data2vec.presets import get_preset, list_presets

HELP = "list presets or show one's resolved config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="preset to show")


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.name:
            raise ValueError("usage: data2vec presets show NAME")
        print(json.dumps(to_dict(get_preset(args.name)), indent=2))
        return 0
    presets = list_presets()
    width = max(map(len, presets))
    for name, desc in presets.items():
        print(f"{name:<{width}}  {desc}")
    return 0
