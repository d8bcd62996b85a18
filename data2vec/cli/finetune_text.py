"""data2vec finetune-text --checkpoint CKPT (--fortunes | --train F --valid F [--test F]) [key=value ...]

An alias of `data2vec finetune --task sentence` (or `--task token`) with the text data flags."""

from __future__ import annotations

import argparse

from data2vec.cli import finetune

HELP = "alias of `finetune --task sentence|token` with text data flags"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="pretrained text weights (any format `finetune --init` reads)")
    p.add_argument("--task", choices=["sentence", "token"], default="sentence")
    p.add_argument("--recipe", help="a named recipe (default: sentence_small / token_small)")
    p.add_argument("--fortunes", action="store_true", help="use the built-in fortunes category task")
    p.add_argument("--train", help="training file: TSV/CSV/JSONL (GLUE layout), or CoNLL for --task token")
    p.add_argument("--valid", help="validation file, same layout")
    p.add_argument("--test", help="test file, same layout (optional)")
    p.add_argument("--text-columns", nargs="+", help="one or two text columns (header names, JSONL keys, or indices)")
    p.add_argument("--label-column", help="label column (name, key or index)")
    p.add_argument("--no-header", action="store_true", help="TSV/CSV files have no header line")
    p.add_argument("--tokenizer", help="tokenizer.json or folder (default: the one the checkpoint was trained with)")
    p.add_argument("--out", default="runs/finetune-text", help="run folder")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="as for `finetune`, e.g. train.lr=4e-4 weights=random")


def run(args: argparse.Namespace) -> int:
    flags = []
    if args.fortunes:
        flags.append("data.fortunes=true")
    if args.text_columns:
        flags.append("data.text_columns=" + ",".join(args.text_columns))
    if args.label_column:
        flags.append(f"data.label_column={args.label_column}")
    if args.no_header:
        flags.append("data.header=false")
    if args.tokenizer:
        flags.append(f"data.tokenizer={args.tokenizer}")
    ns = argparse.Namespace(task=args.task, recipe=args.recipe, init=args.checkpoint, train=args.train,
                            valid=args.valid, test=args.test, out=args.out, resume=args.resume, force=args.force,
                            no_progress=True, overrides=flags + list(args.overrides))
    return finetune.run(ns)
