"""data2vec finetune --task TASK [--recipe NAME] [--init CKPT] [--train ...] [--out DIR] [key=value ...]"""

from __future__ import annotations

import argparse
import dataclasses
import json

from data2vec.config import apply_overrides
from data2vec.modalities.registry import tasks
from data2vec.recipes import default_recipe, get_recipe
from data2vec.train.finetune_config import FinetuneConfig

HELP = "fine-tune a pretrained (or random) encoder: image/audio classification, CTC, sentence or token labels"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=sorted(tasks()), help="what to learn (default: the recipe's task)")
    p.add_argument("--recipe", help="a named recipe (`data2vec recipes`); default: the task's small CPU recipe")
    p.add_argument("--init", help="pretrained weights: our checkpoint or folder, a fairseq file, a transformers "
                                  "folder; omit for random weights of the recipe's preset")
    p.add_argument("--modality", help="the modality of a multimodal --init (default: the one the task reads): modality")
    p.add_argument("--train", help="training data (image folder / idx file, .tsv manifest, text file): data.train")
    p.add_argument("--valid", help="validation data, same form: data.valid")
    p.add_argument("--test", help="test data, scored once with the selected weights: data.test")
    p.add_argument("--out", default="runs/finetune", help="run folder: finetuned.pt, results.json, metrics, checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. train.lr=5e-4 train.epochs=20 data.label_frac=0.01 model.drop_path=0.1")


def resolve(args: argparse.Namespace) -> FinetuneConfig:
    """The recipe with the command line applied on top."""
    if not args.task and not args.recipe:
        raise ValueError(f"give --task (one of {', '.join(sorted(tasks()))}) or --recipe")
    cfg = get_recipe(args.recipe or default_recipe(args.task))
    if args.task and args.task != cfg.task:
        raise ValueError(f"recipe {args.recipe!r} is for task {cfg.task!r}, not {args.task!r}")
    given = {k: getattr(args, k) for k in ("train", "valid", "test") if getattr(args, k)}
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **given))
    if args.init:
        cfg = dataclasses.replace(cfg, init=args.init)
    if getattr(args, "modality", None):
        cfg = dataclasses.replace(cfg, modality=args.modality)
    return apply_overrides(cfg, args.overrides)


def run(args: argparse.Namespace) -> int:
    from data2vec.train.distributed import env
    from data2vec.train.finetune_run import run_finetune

    cfg = resolve(args)
    results = run_finetune(cfg, args.out, resume=args.resume, force=args.force, progress=not args.no_progress)
    if env().rank:  # under torchrun, rank 0 speaks for the job
        return 0
    print(json.dumps({k: v for k, v in results.items() if k != "history"}, indent=2))
    metric = results["metric"]
    line = f"best valid {metric}: {results['valid'][metric]:.4f} (update {results['best_step']})"
    if "test" in results:
        line += f"; test {metric}: {results['test'][metric]:.4f}"
    print(line)
    return 0
