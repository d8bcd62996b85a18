"""data2vec probe CHECKPOINT --train PATH --test PATH [--layer L] [--pooling P]"""

from __future__ import annotations

import argparse
import json
from typing import Any

from data2vec.checkpoints.load import load_model
from data2vec.checkpoints.multimodal import require_one_modality
from data2vec.eval.embed import extract, tokenizer_for
from data2vec.eval.features import POOLINGS, FeatureSpec, default_pooling
from data2vec.data.audio_labeled import class_index
from data2vec.eval.inputs import open_inputs
from data2vec.eval.probe import probe_report

HELP = "linear probe and kNN on frozen features of any checkpoint: images, audio or text"


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    """The checkpoint and feature choices `probe` and `embed` share."""
    p.add_argument("--weights", default="student", choices=["student", "teacher"],
                   help="student weights (what data2vec 2.0 fine-tunes) or the EMA teacher")
    p.add_argument("--modality", help="the modality to read from a multimodal checkpoint (e.g. image, audio, text)")
    p.add_argument("--layer", default="last",
                   help="last | block:N (block N's output, 1-based) | input (what block 1 reads: local features with "
                        "positions) | top:K (average of the top K blocks' normalized "
                        "outputs: the data2vec target representation) | top (the model's own targets.top_k)")
    p.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="mean over real tokens, the CLS token, both, a 2x2 grid of the tokens and CLS (images), or none (one row per token); default: grid+cls "
                        "for images, mean+cls for other models with a CLS token, else mean")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, ...")


def add_input_arguments(p: argparse.ArgumentParser, labels: bool = False) -> None:
    """How audio and text inputs are read (images need nothing)."""
    p.add_argument("--tokenizer", help="text: tokenizer.json or folder (default: the one the model was trained with)")
    p.add_argument("--text-column", default="sentence", help="text TSV/CSV/JSONL: text column (name, key or index)")
    if labels:
        p.add_argument("--label-column", default="label", help="text TSV/CSV/JSONL: label column")
        p.add_argument("--labels", dest="label_ext", default="label",
                       help="audio: extension of the label file beside each manifest (train.tsv + train.EXT)")
    p.add_argument("--no-header", action="store_true", help="text TSV/CSV files have no header line")


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    column = lambda c: int(c) if isinstance(c, str) and c.isdigit() else c  # noqa: E731
    return {"text_column": column(args.text_column), "label_column": column(getattr(args, "label_column", None)),
            "label_ext": getattr(args, "label_ext", None), "header": not args.no_header}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="any checkpoint: a run folder or its last.pt, our folder, a fairseq .pt, a BEiT "
                                      ".pth or a transformers folder")
    p.add_argument("--train", required=True, help="labeled training inputs: images (idx file with labels beside it, "
                   "or folder/<class>/...), audio (manifest .tsv + label file), text (TSV/CSV/JSONL)")
    p.add_argument("--test", required=True, help="labeled test inputs, same forms")
    add_feature_arguments(p)
    add_input_arguments(p, labels=True)
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training inputs")
    p.add_argument("--knn-k", type=int, default=20, help="k for kNN (0: skip kNN)")
    p.add_argument("--progress", action="store_true", help="progress bars while extracting features")


def run(args: argparse.Namespace) -> int:
    model, cfg, _ = load_model(args.checkpoint, args.weights, modality=args.modality)
    require_one_modality(cfg, args.checkpoint)
    spec = FeatureSpec(args.layer, args.pooling or default_pooling(model))
    if spec.pooling == "none":
        raise ValueError("probes need one vector per input: choose --pooling mean, cls, mean+cls or grid+cls")
    tokenizer = tokenizer_for(cfg, args.tokenizer)
    feats = []
    for path, limit in ((args.train, args.train_limit), (args.test, 0)):
        inputs = open_inputs(path, cfg, tokenizer=tokenizer, limit=limit, **input_options(args))
        if inputs.labels is None:
            raise ValueError(f"{path}: probing needs labels (images: an idx labels file beside it or one sub-folder "
                             "per class; audio: a label file beside the manifest; text: a label column)")
        feats.append(extract(model, cfg, inputs, spec, args.batch_size, args.device, args.progress))
    names, train_y = class_index([str(v) for v in feats[0].labels])
    _, test_y = class_index([str(v) for v in feats[1].labels], names)
    report = probe_report((feats[0].features, train_y), (feats[1].features, test_y), args.knn_k or None)
    print(json.dumps({"checkpoint": str(args.checkpoint), "weights": args.weights, "layer": spec.layer,
                      "pooling": spec.pooling, "train_samples": len(train_y), "test_samples": len(test_y),
                      "skipped": len(feats[0].skipped) + len(feats[1].skipped), **report}, indent=2))
    print(f"linear probe top-1: {100 * report['linear_top1']:.2f}%")
    if "knn_top1" in report:
        print(f"kNN (k={args.knn_k}) top-1: {100 * report['knn_top1']:.2f}%")
    return 0
