"""data2vec finetune --train TSV --valid TSV [--init CKPT] [--recipe NAME] [--out DIR] [key=value ...]"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from data2vec.config import apply_overrides, to_dict
from data2vec.train.finetune_audio import recipe, run_speech_finetune

HELP = "fine-tune a pretrained audio encoder: CTC speech recognition (WER/CER) or utterance classification"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", help="training manifest (.tsv) with a label file next to it (train.ltr / .wrd / .<labels>)")
    p.add_argument("--valid", help="held-out manifest (.tsv) with its label file, for WER/CER or accuracy")
    p.add_argument("--init", help="pretraining checkpoint (runs/.../checkpoints/last.pt); omit for random weights")
    p.add_argument("--recipe", default="ctc_small", help="ctc_small (2-core CPU) or ctc_base_10h (fairseq vox_10h)")
    p.add_argument("--out", default="runs/finetune", help="output folder for finetuned.pt and metrics.jsonl")
    p.add_argument("--force", action="store_true", help="overwrite an existing finetuned.pt in --out")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. task=classify labels=kind train_limit=200 optim.lr=5e-4")


def run(args: argparse.Namespace) -> int:
    cfg = recipe(args.recipe)
    given = {"train_manifest": args.train, "valid_manifest": args.valid, "init": args.init}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v})
    cfg = apply_overrides(cfg, args.overrides)
    out = Path(args.out)
    if (out / "finetuned.pt").exists() and not args.force:
        raise FileExistsError(f"{out / 'finetuned.pt'} exists; use --force to overwrite or choose another --out")
    print("resolved config:\n" + json.dumps(to_dict(cfg), indent=2), flush=True)
    summary = run_speech_finetune(cfg, out)
    final = summary["history"][-1] if summary["history"] else {}
    print(json.dumps({k: v for k, v in summary.items() if k != "history"} | {"final": final}, indent=2))
    return 0
