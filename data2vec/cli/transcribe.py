"""data2vec transcribe --checkpoint CKPT [--vocab FILE] FILES..."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from data2vec.checkpoints.load import load_model
from data2vec.checkpoints.unpickle import load_checkpoint
from data2vec.heads.ctc import BLANK
from data2vec.train.finetune import FORMAT as FINETUNED_FORMAT
from data2vec.train.finetune_audio import transcribe
from data2vec.train.finetune_run import load_finetuned

HELP = "transcribe audio files with a CTC fine-tuned checkpoint (greedy decoding)"
# fairseq's Dictionary puts these before the symbols of dict.ltr.txt; <s> (id 0) is the CTC blank.
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="runs/finetune/finetuned.pt",
                   help="finetuned.pt written by `data2vec finetune`, or any CTC fine-tuned checkpoint (fairseq "
                        "wav2vec_ctc .pt, transformers *ForCTC folder, our folder)")
    p.add_argument("--vocab", help="the output symbols of a CTC checkpoint other than finetuned.pt: vocab.json "
                                   "({symbol: id}), a fairseq dict.ltr.txt, or one symbol per line in id order "
                                   "(default: vocab.json inside a transformers folder)")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, ...; any rate, resampled to 16 kHz)")


def read_vocab(path: Path) -> tuple[str, ...]:
    """CTC output symbols in id order (id 0: the blank)."""
    if path.suffix == ".json":
        ids = json.loads(path.read_text(encoding="utf-8"))
        symbols = [s for s, _ in sorted(ids.items(), key=lambda kv: kv[1])]
        if [ids[s] for s in symbols] != list(range(len(symbols))):
            raise ValueError(f"{path}: ids must be 0..{len(symbols) - 1} without gaps")
        return (BLANK, *symbols[1:])
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.name.startswith("dict.") and all(len(line.split()) == 2 for line in lines):
        return (BLANK, *FAIRSEQ_SPECIALS[1:], *(line.split()[0] for line in lines))
    return (BLANK, *lines[1:])


def run(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_file() and load_checkpoint(path).get("format") == FINETUNED_FORMAT:
        model, cfg, pre, outputs = load_finetuned(path)
        if cfg.task != "ctc":
            raise ValueError(f"{path} was fine-tuned for task={cfg.task!r}, not speech recognition (ctc)")
    else:  # any other format, through the one loader
        model, pre, head = load_model(path)
        if head is None or head.kind != "ctc":
            raise ValueError(f"{path}: not a CTC fine-tuned model (head: {head.kind if head else 'none'})")
        outputs = list(read_vocab(_vocab_file(path, args.vocab)))
        if len(outputs) != head.num_outputs:
            raise ValueError(f"{args.vocab or path}: {len(outputs)} symbols for a head with {head.num_outputs} outputs")
    for file, text in zip(args.files, transcribe(model, pre, outputs, args.files)):
        print(f"{file}\t{text}", flush=True)
    return 0


def _vocab_file(checkpoint: Path, vocab: Optional[str]) -> Path:
    if vocab:
        return Path(vocab)
    if (checkpoint / "vocab.json").is_file():
        return checkpoint / "vocab.json"
    raise ValueError(f"{checkpoint}: give --vocab (the CTC output symbols: vocab.json, dict.ltr.txt or one per line)")
