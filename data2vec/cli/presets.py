"""data2vec presets [show NAME]"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from data2vec.config import to_dict
from data2vec.presets import get_preset, list_presets

HELP = "list presets or show one's resolved config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="preset to show")


def list_or_show(args: argparse.Namespace, what: str, listing: Callable[[], dict[str, str]],
                 get: Callable[[str], Any]) -> int:
    """`show NAME`: the resolved config as JSON; else one line per registry entry."""
    if args.action == "show":
        if not args.name:
            raise ValueError(f"usage: data2vec {what} show NAME")
        print(json.dumps(to_dict(get(args.name)), indent=2))
        return 0
    entries = listing()
    width = max(map(len, entries))
    for name, desc in entries.items():
        print(f"{name:<{width}}  {desc}")
    return 0


def run(args: argparse.Namespace) -> int:
    return list_or_show(args, "presets", list_presets, get_preset)
