"""data2vec embed CHECKPOINT INPUTS --out FILE.npy|FILE.safetensors [--layer L] [--pooling P]"""

from __future__ import annotations

import argparse

from data2vec.cli.probe import add_feature_arguments, add_input_arguments, input_options
from data2vec.eval.embed import OUTPUT_SUFFIXES, embed

HELP = "embeddings of images, audio or text from any checkpoint (.npy or safetensors, plus an index file)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="any checkpoint: a run folder or its last.pt, our folder, a fairseq .pt, "
                                      "a BEiT .pth or a transformers folder")
    p.add_argument("inputs", help="images: a folder or an idx file; audio: a folder or a manifest (.tsv); text: "
                                  "a .txt file (one text per line) or a TSV/CSV/JSONL file")
    p.add_argument("--out", required=True, help=f"output file, one of {OUTPUT_SUFFIXES}; the index is written "
                                                "beside it as <name>.index.jsonl")
    add_feature_arguments(p)
    add_input_arguments(p)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    emb = embed(args.checkpoint, args.inputs, args.layer, args.pooling, args.weights, args.batch_size, args.device,
                args.tokenizer, progress=not args.no_progress, modality=args.modality, **input_options(args))
    out, index = emb.save(args.out, {"checkpoint": str(args.checkpoint), "weights": args.weights})
    shape = "x".join(map(str, emb.features.shape))
    print(f"wrote {out} ({shape}; layer {emb.spec.layer}, pooling {emb.spec.pooling}) and {index}: "
          f"{len(emb.names)} embedded, {len(emb.skipped)} skipped")
    return 0
