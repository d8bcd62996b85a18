"""data2vec predict --checkpoint runs/finetune/finetuned.pt INPUTS..."""

from __future__ import annotations

import argparse
import sys

HELP = "print the labels a fine-tuned model gives image files, audio files or text lines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="runs/finetune/finetuned.pt", help="finetuned.pt written by `data2vec finetune`")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image or audio files; for text models, text files whose lines are classified ('-' or none: stdin)")


def _lines(paths: list[str]) -> list[str]:
    out = []
    for path in paths or ["-"]:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        out += [line for line in text.splitlines() if line.strip()]
    return out


def run(args: argparse.Namespace) -> int:
    from data2vec.train.finetune_run import load_finetuned

    model, cfg, pre, outputs = load_finetuned(args.checkpoint)
    if cfg.task in ("sentence", "token"):
        from data2vec.train.finetune_text import predict_texts

        lines = _lines(args.inputs)
        for line, label in zip(lines, predict_texts(model, cfg, pre, outputs, lines)):
            print(f"{line}\t{label}", flush=True)
        return 0
    if not args.inputs:
        raise ValueError("give the image or audio files to label")
    if cfg.task == "image-classification":
        from data2vec.train.finetune_image import predict_images

        labels = predict_images(model, pre, outputs, args.inputs)
    else:
        from data2vec.train.finetune_audio import transcribe

        labels = transcribe(model, pre, outputs, args.inputs, ctc=cfg.task == "ctc")
    for path, label in zip(args.inputs, labels):
        print(f"{path}\t{label}", flush=True)
    return 0
