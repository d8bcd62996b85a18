"""data2vec convert [--from fairseq|ours] IN --to ours OUT"""

from __future__ import annotations

import argparse
from pathlib import Path

from data2vec.checkpoints.fairseq import import_fairseq
from data2vec.checkpoints.pretrained import from_pretrained, save_pretrained

HELP = "convert a checkpoint (fairseq data2vec 2.0 .pt, or our folder) to our safetensors folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="fairseq .pt file or our checkpoint folder")
    p.add_argument("--from", dest="source", choices=["fairseq", "ours"],
                   help="input format (default: a folder is ours, a file is fairseq)")
    p.add_argument("--to", dest="target", choices=["ours"], default="ours", help="output format")
    p.add_argument("output", help="folder to write (config.json, model.safetensors, teacher.safetensors)")
    p.add_argument("--no-teacher", action="store_true", help="leave out the EMA teacher")


def run(args: argparse.Namespace) -> int:
    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    source = args.source or ("ours" if src.is_dir() else "fairseq")
    if source == "fairseq":
        cfg, student, teacher = import_fairseq(src)
        meta = {"source": src.name, "source_format": "fairseq data2vec_multi"}
        save_pretrained(student, cfg, args.output, teacher=None if args.no_teacher else teacher, metadata=meta)
    else:
        model, cfg, teacher = from_pretrained(src)  # a full load validates keys and shapes
        save_pretrained(model, cfg, args.output, teacher=None if args.no_teacher else teacher,
                        metadata={"source": src.name, "source_format": "data2vec"})
    kept = "with" if teacher is not None and not args.no_teacher else "without"
    print(f"wrote {args.output} ({cfg.model.input.kind}, data2vec {cfg.model.version}.0, {kept} EMA teacher)")
    return 0
