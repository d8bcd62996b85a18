"""data2vec transcribe --checkpoint runs/finetune/finetuned.pt FILES..."""

from __future__ import annotations

import argparse

HELP = "transcribe audio files with a CTC fine-tuned checkpoint (greedy decoding)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="runs/finetune/finetuned.pt", help="finetuned.pt written by `data2vec finetune`")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, ...; any rate, resampled to 16 kHz)")


def run(args: argparse.Namespace) -> int:
    from data2vec.train.finetune_audio import transcribe
    from data2vec.train.finetune_run import load_finetuned

    model, cfg, pre, outputs = load_finetuned(args.checkpoint)
    if cfg.task != "ctc":
        raise ValueError(f"{args.checkpoint} was fine-tuned for task={cfg.task!r}, not speech recognition (ctc)")
    for path, text in zip(args.files, transcribe(model, pre, outputs, args.files)):
        print(f"{path}\t{text}", flush=True)
    return 0
