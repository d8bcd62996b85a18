"""`data2vec <verb>`: a thin command line over the library's functions."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional

from data2vec import __version__
from data2vec.config import ConfigError

# verb -> (module with add_arguments(parser) and run(args) -> int, help)
VERBS = {
    "pretrain": ("data2vec.cli.pretrain", "pretrain a model from a preset (data2vec 1.0 or 2.0)"),
    "probe": ("data2vec.cli.probe", "linear probe and kNN on frozen features of a checkpoint"),
    "presets": ("data2vec.cli.presets", "list presets or show one's resolved config"),
    "demo": ("data2vec.cli.demo", "pretrain on Fashion-MNIST and compare linear probes"),
    "speech-corpus": ("data2vec.data.speech_corpus", "synthesize a spoken corpus with espeak-ng"),
    "tokenizer": ("data2vec.data.tokenizer", "train a byte-level BPE tokenizer"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data2vec", description="data2vec 1.0 / 2.0 self-supervised learning")
    parser.add_argument("--version", action="version", version=f"data2vec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ConfigError, FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"data2vec {args.verb}: error: {msg}", file=sys.stderr)
        return 2
