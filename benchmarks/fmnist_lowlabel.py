"""Fashion-MNIST low-label image classification: does pretraining pay off?

Fine-tunes the same small ViT on 1% (and 10%) of the Fashion-MNIST training labels, once from a
pretrained data2vec checkpoint and once from random weights of the same architecture, under the
same recipe and the same number of updates, for several seeds. Model selection uses a validation
split held out of the training labels (`data.valid_size` images, disjoint from the labeled
subset); the test set is scored once per run, with the selected weights.

Each seed draws its own labeled subset and validation split (`data.split_seed`) and its own
training randomness (`train.seed`); the pretrained and random runs of a seed share both, so the
difference is paired.

    OMP_NUM_THREADS=1 python benchmarks/fmnist_lowlabel.py --checkpoint runs/fm/checkpoints/last.pt \
        --fractions 0.01 0.1 --seeds 3 --out runs/fmnist-lowlabel

Without --checkpoint (or when it does not exist) the pretraining run is made first:
`data2vec pretrain --preset data2vec2_image_fmnist --out OUT/pretrain`. Every command is
printed and saved with the results (OUT/summary.json, OUT/summary.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from text import run_cli  # noqa: E402  (benchmarks/ is the script's folder: one printed, logged CLI runner)

INITS = ("pretrained", "random")


def finetune_argv(args: argparse.Namespace, ckpt: str, fraction: float, seed: int, init: str, out: Path) -> list[str]:
    """One fine-tuning run; the random baseline keeps the checkpoint's architecture only."""
    argv = ["finetune", "--recipe", args.recipe, "--init", ckpt, "--out", str(out), "--force", "--no-progress",
            f"data.label_frac={fraction}", f"data.split_seed={seed}", f"train.seed={seed}",
            f"weights={'student' if init == 'pretrained' else 'random'}"]
    if args.updates:
        argv.append(f"train.max_steps={args.updates}")
    return argv + list(args.overrides)


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per labeled fraction: test accuracy mean/std per init and the paired difference."""
    rows = []
    for fraction in sorted({r["fraction"] for r in runs}):
        by = {init: {r["seed"]: r for r in runs if r["fraction"] == fraction and r["init"] == init} for init in INITS}
        seeds = sorted(set(by["pretrained"]) & set(by["random"]))
        row: dict[str, Any] = {"fraction": fraction, "seeds": seeds,
                               "labeled": by["pretrained"][seeds[0]]["labeled"] if seeds else 0}
        for init in INITS:
            row[init] = mean_std([by[init][s]["test_accuracy"] for s in seeds])
        row["difference"] = mean_std([by["pretrained"][s]["test_accuracy"] - by["random"][s]["test_accuracy"]
                                      for s in seeds])
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], runs: list[dict[str, Any]], commands: list[str], minutes: float) -> str:
    lines = ["| labels | seeds | pretrained: test acc % | random init: test acc % | difference (paired) |",
             "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k][0]:.2f} ± {r[k][1]:.2f}" for k in (*INITS, "difference")]
        lines.append(f"| {100 * r['fraction']:g}% ({r['labeled']}) | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    updates = sorted({r["updates"] for r in runs})
    lines += ["", f"Updates per run: {', '.join(map(str, updates))}; fine-tuning wall time {minutes:.1f} min in all.", "",
              "Commands:", "", "```", *commands, "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="", help="pretrained checkpoint (any format --init reads)")
    p.add_argument("--pretrain-preset", default="data2vec2_image_fmnist", help="preset pretrained when no checkpoint")
    p.add_argument("--recipe", default="image_fmnist_small")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1], help="fractions of the training labels")
    p.add_argument("--seeds", type=int, default=3, help="seeds 1..N (labeled subset, validation split, training)")
    p.add_argument("--updates", type=int, default=0, help="updates per run (0: the recipe's epochs)")
    p.add_argument("--out", default="runs/fmnist-lowlabel")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing: tabulate the finished runs already in --out (e.g. after an interrupted sweep)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="more fine-tuning overrides for every run")
    args = p.parse_args()
    out, commands, runs, t0 = Path(args.out), [], [], time.perf_counter()
    ckpt = args.checkpoint
    if not args.summarize and (not ckpt or not Path(ckpt).exists()):
        run_cli(["pretrain", "--preset", args.pretrain_preset, "--out", str(out / "pretrain"), "--force",
                 "--no-progress"], commands)
        ckpt = str(out / "pretrain" / "checkpoints" / "last.pt")
    for fraction in args.fractions:
        for seed in range(1, args.seeds + 1):
            for init in INITS:
                run_dir = out / f"labels{fraction:g}-seed{seed}-{init}"
                if args.summarize:
                    if not (run_dir / "results.json").exists():
                        continue
                    commands.append("data2vec " + " ".join(shlex.quote(a) for a in
                                                           finetune_argv(args, ckpt, fraction, seed, init, run_dir)))
                else:
                    run_cli(finetune_argv(args, ckpt, fraction, seed, init, run_dir), commands)
                res = json.loads((run_dir / "results.json").read_text())
                runs.append({"fraction": fraction, "seed": seed, "init": init, "test_accuracy": res["test"]["accuracy"],
                             "valid_accuracy": res["valid"]["accuracy"], "best_step": res["best_step"],
                             "updates": res["updates"], "labeled": res["examples"]["train"],
                             "seconds": res["seconds_this_run"]})
    rows = summarize(runs)
    minutes = sum(r["seconds"] for r in runs) / 60 if args.summarize else (time.perf_counter() - t0) / 60
    text = render(rows, runs, commands, minutes)
    (out / "summary.json").write_text(json.dumps({"rows": rows, "runs": runs, "commands": commands,
                                                  "minutes": minutes}, indent=2) + "\n")
    (out / "summary.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
