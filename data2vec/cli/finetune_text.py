"""data2vec finetune-text --checkpoint CKPT (--fortunes | --train F --valid F [--test F]) [key=value ...]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data2vec.config import apply_overrides
from data2vec.data.text_fortunes import FORTUNES_DIR, fortunes_classification
from data2vec.data.text_labeled import read_labeled, read_token_classification
from data2vec.data.tokenizer import TextTokenizer
from data2vec.train.finetune_text import TextFinetuneConfig, finetune_text

HELP = "fine-tune a pretrained text model: sentence(-pair) classification/regression, token labels"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a text pretraining checkpoint (runs/.../checkpoints/last.pt)")
    p.add_argument("--fortunes", action="store_true", help="use the built-in fortunes category task")
    p.add_argument("--fortunes-dir", default=FORTUNES_DIR, help=f"fortune files (default {FORTUNES_DIR})")
    p.add_argument("--train", help="training file: TSV/CSV/JSONL (GLUE layout), or CoNLL for task=token")
    p.add_argument("--valid", help="validation file, same layout")
    p.add_argument("--test", help="test file, same layout (optional)")
    p.add_argument("--text-columns", nargs="+", default=["sentence"],
                   help="one or two text columns (header names, JSONL keys, or 0-based indices)")
    p.add_argument("--label-column", default="label", help="label column (name, key or index)")
    p.add_argument("--no-header", action="store_true", help="TSV/CSV files have no header line")
    p.add_argument("--tokenizer", help="tokenizer.json or folder (default: the one the checkpoint was trained with)")
    p.add_argument("--out", help="folder for finetuned.pt and results.json")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="fine-tuning settings, e.g. task=regression lr=4e-5 epochs=10 init=random")


def _column(c: str) -> str | int:
    return int(c) if c.isdigit() else c


def load_splits(args: argparse.Namespace, task: str) -> dict:
    """The labeled splits named on the command line (labels fixed by the training file)."""
    if args.fortunes:
        if task != "classification":
            raise ValueError("--fortunes is a classification task; drop task=" + task)
        return fortunes_classification(args.fortunes_dir)
    if not args.train or not args.valid:
        raise ValueError("give --train and --valid files (or --fortunes)")
    files = {"train": args.train, "valid": args.valid, **({"test": args.test} if args.test else {})}
    if task == "token":
        train = read_token_classification(files["train"])
        return {k: train if k == "train" else read_token_classification(f, train.label_names) for k, f in files.items()}
    cols = [_column(c) for c in args.text_columns]
    label = _column(args.label_column)

    def read(path: str, labels=None):
        return read_labeled(path, cols, label, task=task, labels=labels, header=not args.no_header)

    train = read(files["train"])
    return {k: train if k == "train" else read(f, train.label_names) for k, f in files.items()}


def run(args: argparse.Namespace) -> int:
    cfg = apply_overrides(TextFinetuneConfig(), args.overrides)
    splits = load_splits(args, cfg.task)
    tokenizer = TextTokenizer.load(args.tokenizer) if args.tokenizer else None
    result = finetune_text(args.checkpoint, splits, cfg, tokenizer, args.out)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        (Path(args.out) / "results.json").write_text(text + "\n")
    if "test" in result:
        print(f"test {result['metric']}: {result['test'][result['metric']]:.4f} (best epoch {result['best_epoch']})")
    return 0
