"""Where the frozen features of a pretrained model are best: linear probe and kNN over read-outs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/readouts.py runs/sp1000/checkpoints/last.pt \
        --train runs/speech/kw/train.tsv --test runs/speech/kw/test.tsv --labels word

For each read-out (a layer and a pooling of `data2vec.eval.features`), the student, the EMA
teacher and the same architecture at random init are probed the way `data2vec probe` probes
(a linear probe trained on --train, scored on --test, and kNN). Works for any single-modality
checkpoint; the read-outs default to the last block, the block before it and the target
representation (top K), mean-pooled, plus CLS poolings when the model has a CLS token.
Prints a markdown table (top-1 %, linear / kNN) and writes it as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from data2vec.checkpoints.load import load_model
from data2vec.data.audio_labeled import class_index
from data2vec.eval.embed import extract, tokenizer_for
from data2vec.eval.features import FeatureSpec, default_pooling
from data2vec.eval.inputs import open_inputs
from data2vec.eval.probe import probe_report
from data2vec.models import build_model


def default_specs(model: torch.nn.Module, depth: int) -> list[FeatureSpec]:
    """The last block, the one before it and the top-K average, each with the mean and (for
    models with a CLS token) the CLS and the modality's default pooling."""
    poolings = ["mean"]
    if model.modality.num_extra_tokens > 0:
        poolings += ["cls", default_pooling(model)]
    layers = ["last", f"block:{depth - 1}", "top"] if depth > 1 else ["last", "top"]
    return [FeatureSpec(layer, pooling) for layer in layers for pooling in dict.fromkeys(poolings)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--labels", default="label", help="audio: extension of the label file beside each manifest")
    ap.add_argument("--label-column", default="label", help="text: label column")
    ap.add_argument("--text-column", default="sentence", help="text: text column")
    ap.add_argument("--specs", help="comma-separated LAYER/POOLING, e.g. last/mean,top/mean (default: see above)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-init model")
    ap.add_argument("--knn-k", type=int, default=20)
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    models = {w: load_model(a.checkpoint, w) for w in ("student", "teacher")}
    cfg = models["student"].cfg
    torch.manual_seed(a.seed)
    random = build_model(cfg.model).eval()
    nets = {"student": models["student"].model, "teacher": models["teacher"].model, "random init": random}
    specs = ([FeatureSpec(*s.split("/")) for s in a.specs.split(",")] if a.specs
             else default_specs(random, cfg.model.encoder.depth))
    tokenizer = tokenizer_for(cfg)
    opts = {"text_column": a.text_column, "label_column": a.label_column, "label_ext": a.labels}
    data = [open_inputs(p, cfg, tokenizer=tokenizer, **opts) for p in (a.train, a.test)]
    rows = []
    print("| read-out | " + " | ".join(nets) + " |\n|---|" + "---|" * len(nets))
    for spec in specs:
        cells = {}
        for name, net in nets.items():
            train, test = (extract(net, cfg, d, spec) for d in data)
            names, train_y = class_index([str(v) for v in train.labels])
            _, test_y = class_index([str(v) for v in test.labels], names)
            cells[name] = probe_report((train.features, train_y), (test.features, test_y), a.knn_k or None)
        rows.append({"layer": spec.layer, "pooling": spec.pooling, **cells})
        fmt = " | ".join(f"{100 * c['linear_top1']:.2f} / {100 * c.get('knn_top1', float('nan')):.2f}"
                         for c in cells.values())
        print(f"| {spec.layer}, {spec.pooling} | {fmt} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"checkpoint": a.checkpoint, "train": a.train, "test": a.test,
                                            "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
