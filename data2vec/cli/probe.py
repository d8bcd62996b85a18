"""data2vec probe CHECKPOINT --train PATH --test PATH"""

from __future__ import annotations

import argparse
import json

from data2vec.checkpoints.load import load_model
from data2vec.data.image import TransformedImages, collate_images, eval_transform, open_images
from data2vec.eval.probe import POOLINGS, encoder_features, extract_features, probe_report

HELP = "linear probe and kNN on frozen features of a checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a training checkpoint (runs/.../checkpoints/last.pt)")
    p.add_argument("--train", required=True, help="labeled training images: idx file (labels beside it) or folder/<class>/...")
    p.add_argument("--test", required=True, help="labeled test images, same forms")
    p.add_argument("--weights", default="student", choices=["student", "teacher"],
                   help="student weights (what data2vec 2.0 fine-tunes) or the EMA teacher")
    p.add_argument("--pooling", default="mean+cls", choices=POOLINGS)
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--knn-k", type=int, default=20, help="k for kNN (0: skip kNN)")
    p.add_argument("--batch-size", type=int, default=256)


def run(args: argparse.Namespace) -> int:
    model, cfg, _ = load_model(args.checkpoint, args.weights)
    inp = cfg.model.input
    if inp.kind not in ("image", "beit"):
        raise ValueError(f"{args.checkpoint}: probe supports image models; this one is {inp.kind!r}")
    tf = eval_transform(inp.image_size, cfg.data.mean, cfg.data.std)
    datasets = []
    for path, limit in ((args.train, args.train_limit), (args.test, 0)):
        images = open_images(path, inp.in_chans, limit)
        if getattr(images, "labels", None) is None or min(images.labels) < 0:
            raise ValueError(f"{path}: probing needs labels (an idx labels file beside it, or one sub-folder per class)")
        datasets.append(TransformedImages(images, tf))
    fn = encoder_features(model, args.pooling)
    train = extract_features(fn, datasets[0], collate_images, args.batch_size)
    test = extract_features(fn, datasets[1], collate_images, args.batch_size)
    report = probe_report(train, test, args.knn_k or None)
    print(json.dumps({"checkpoint": args.checkpoint, "weights": args.weights, "pooling": args.pooling,
                      "train_samples": len(train[1]), "test_samples": len(test[1]), **report}, indent=2))
    print(f"linear probe top-1: {100 * report['linear_top1']:.2f}%")
    if "knn_top1" in report:
        print(f"kNN (k={args.knn_k}) top-1: {100 * report['knn_top1']:.2f}%")
    return 0
