"""Time-series benchmark on the built-in Japanese Vowels data (2-core CPU, a few minutes per seed).

For each seed:
1. pretrain `data2vec2_series_small` (data2vec 2.0, 600 updates on the 270 training series);
2. linear probe and kNN on frozen mean-pooled last-layer features: the pretrained encoder, the
   same architecture with random weights (the seed's initialisation), and the standardized raw
   channels mean-pooled over time;
3. fine-tune (`finetune --task series-classification`, the `series_small` recipe) from the
   pretrained encoder and from random weights (`weights=random`); test accuracy on 370 series.

Every pretraining and fine-tuning step is a `data2vec` CLI command (printed).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/timeseries.py --out runs/bench-ts --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch

from data2vec.cli import main as cli
from data2vec.checkpoints.load import load_model
from data2vec.eval.probe import encoder_features, extract_features, probe_report
from data2vec.heads.classification import masked_mean
from data2vec.models import build_model
from data2vec.modalities.timeseries import VOWELS_TEST, VOWELS_TRAIN, collate_series, open_series
from data2vec.presets import get_preset

PRESET = "data2vec2_series_small"


def run_cli(argv: list[str]) -> None:
    cmd = "data2vec " + " ".join(shlex.quote(a) for a in argv)
    print(f"\n$ {cmd}", flush=True)
    if cli(argv) != 0:
        raise SystemExit(f"command failed: {cmd}")


def raw_features(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Standardized channels mean-pooled over the real samples: (B, C)."""
    return masked_mean(batch["series"].transpose(1, 2), batch["padding_mask"])


def probes(model: torch.nn.Module | None) -> dict[str, float]:
    cfg = get_preset(PRESET)
    train, names = open_series(VOWELS_TRAIN, cfg.data, cfg.model.input)
    test, _ = open_series(VOWELS_TEST, cfg.data, cfg.model.input, names)
    fn = raw_features if model is None else encoder_features(model, "mean")
    return probe_report(extract_features(fn, train, collate_series), extract_features(fn, test, collate_series),
                        knn_k=5)


def finetune_accuracy(out: Path, init: str, seed: int, random: bool) -> float:
    run = out / f"ft-{'random' if random else 'pretrained'}-s{seed}"
    run_cli(["finetune", "--task", "series-classification", "--init", init, "--out", str(run), "--force",
             "--no-progress", f"train.seed={seed}", *(["weights=random"] if random else [])])
    return json.loads((run / "results.json").read_text())["test"]["accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench-ts")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = p.parse_args()
    out, rows = Path(args.out), []
    for seed in args.seeds:
        run = out / f"pretrain-s{seed}"
        run_cli(["pretrain", "--preset", PRESET, "--out", str(run), "--force", "--no-progress", f"train.seed={seed}"])
        ckpt = str(run / "checkpoints" / "last.pt")
        torch.manual_seed(seed)
        random_model = build_model(get_preset(PRESET).model)
        row = {"seed": seed, "probe_pretrained": probes(load_model(ckpt).model), "probe_random": probes(random_model),
               "probe_raw": probes(None), "finetune_pretrained": finetune_accuracy(out, ckpt, seed, False),
               "finetune_random": finetune_accuracy(out, ckpt, seed, True)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n| seed | probe: pretrained | probe: random | probe: raw | fine-tune: pretrained | fine-tune: random |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [f"{100 * r[k]['linear_top1']:.1f} / {100 * r[k]['knn_top1']:.1f}"
                 for k in ("probe_pretrained", "probe_random", "probe_raw")]
        print(f"| {r['seed']} | " + " | ".join(cells) + f" | {r['finetune_pretrained']:.1f} | {r['finetune_random']:.1f} |")


if __name__ == "__main__":
    main()
