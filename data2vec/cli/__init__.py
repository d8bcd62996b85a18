"""`data2vec <verb>`: a thin command line over the library's functions."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional

from data2vec import __version__
from data2vec.config import ConfigError



def verbs() -> dict[str, str]:
    """{verb: module}: every module in data2vec/cli/ is a verb (underscores become dashes).

    A verb module defines HELP, add_arguments(parser) and run(args) -> int.
    """
    import pkgutil

    import data2vec.cli as pkg

    return {m.name.replace("_", "-"): f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data2vec", description="data2vec 1.0 / 2.0 self-supervised learning")
    parser.add_argument("--version", action="version", version=f"data2vec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, name in sorted(verbs().items()):
        module = importlib.import_module(name)
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        p.set_defaults(_module=name)
        module.add_arguments(p)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ConfigError, OSError, KeyError, ValueError, FloatingPointError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"data2vec {args.verb}: error: {msg}", file=sys.stderr)
        return 2
