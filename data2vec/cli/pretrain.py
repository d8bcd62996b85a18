"""data2vec pretrain --preset NAME [--out DIR] [--resume] [--force] [key=value ...]

Runs as is under torchrun (`torchrun --nproc-per-node N -m data2vec pretrain ...`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from data2vec.algorithms.multimodal import is_multimodal, modality_config
from data2vec.checkpoints.load import read_weights
from data2vec.config import PretrainConfig, apply_overrides, from_dict, load_config, to_dict
from data2vec.presets import get_preset
from data2vec.train.checkpoint import load_train_checkpoint
from data2vec.train.distributed import env
from data2vec.train.pretrain import LAST, pretrain

HELP = "pretrain a model from a preset (data2vec 1.0 or 2.0)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named preset (see `data2vec presets`)")
    p.add_argument("--config", help="a config.json to start from instead of a preset")
    p.add_argument("--out", default="runs/pretrain", help="run directory (default: runs/pretrain)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", help="start from these weights (fairseq .pt or a save_pretrained folder); without "
                                  "--preset/--config the model config comes from them too")
    p.add_argument("--modality", help="train only this modality of a multimodal preset or config (the same "
                                      "architecture alone: the single-modality baseline of a joint run)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=3e-4")


def resolve_config(args: argparse.Namespace) -> PretrainConfig:
    if args.resume:
        if args.preset or args.config:
            raise ValueError("--resume takes the run's own config; do not pass --preset or --config")
        cfg = from_dict(PretrainConfig, load_train_checkpoint(Path(args.out) / LAST)[0]["config"])
    elif args.init and not (args.preset or args.config):
        cfg = read_weights(args.init)[0]
    elif args.config:
        cfg = load_config(args.config)
    elif args.preset:
        cfg = get_preset(args.preset)
    else:
        raise ValueError("give --preset NAME (see `data2vec presets`) or --config FILE")
    cfg = apply_overrides(cfg, args.overrides)
    if getattr(args, "modality", None):
        if args.resume or not (args.preset or args.config):
            raise ValueError("--modality selects from a multimodal --preset or --config (a resumed run keeps its own)")
        if not is_multimodal(cfg.model):
            raise ValueError(f"--modality {args.modality}: {args.preset or args.config} is not a multimodal config")
        cfg = modality_config(cfg, args.modality)
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    main = env().is_main  # under torchrun, rank 0 speaks for the job
    if main:
        print("resolved config:\n" + json.dumps(to_dict(cfg), indent=2), flush=True)
    if args.init and args.resume:
        raise ValueError("--init starts a new run; --resume continues one: use one of them")
    summary = pretrain(cfg, args.out, resume=args.resume, force=args.force, progress=not args.no_progress,
                       init=args.init)
    if main:
        print(json.dumps(summary, indent=2))
    return 0
