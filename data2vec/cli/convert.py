"""data2vec convert [--from fairseq|ours] IN --to ours OUT"""

from __future__ import annotations

import argparse
from pathlib import Path

from data2vec.checkpoints.load import FORMATS, detect_format, read_weights
from data2vec.checkpoints.pretrained import save_pretrained

HELP = "convert a checkpoint (fairseq data2vec 2.0 .pt, or our folder) to our safetensors folder"
SOURCE_NAMES = {"fairseq": "fairseq data2vec_multi", "ours": "data2vec"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="fairseq .pt file or our checkpoint folder")
    p.add_argument("--from", dest="source", choices=FORMATS,
                   help="input format (default: a folder is ours, a file is fairseq)")
    p.add_argument("--to", dest="target", choices=["ours"], default="ours", help="output format")
    p.add_argument("output", help="folder to write (config.json, model.safetensors, teacher.safetensors)")
    p.add_argument("--no-teacher", action="store_true", help="leave out the EMA teacher")


def run(args: argparse.Namespace) -> int:
    source = args.source or detect_format(args.input)
    cfg, student, teacher = read_weights(args.input, source)
    if args.no_teacher:
        teacher = None
    # Keep the original provenance through ours -> ours copies (it carries the license note).
    meta = {"source": Path(args.input).name, "source_format": SOURCE_NAMES[source]}
    if source == "ours":
        from data2vec.checkpoints.pretrained import MODEL_FILE, read_metadata

        old = read_metadata(Path(args.input) / MODEL_FILE)
        meta.update({k: old[k] for k in ("source", "source_format") if k in old})
    save_pretrained(student, cfg, args.output, teacher=teacher, metadata=meta)
    kept = "with" if teacher is not None else "without"
    print(f"wrote {args.output} ({cfg.model.input.kind}, data2vec {cfg.model.version}.0, {kept} EMA teacher)")
    return 0
