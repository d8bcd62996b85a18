"""Frozen-feature probes of an image preset along its pretraining: where the features are best, and
how they grow with pretraining minutes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_curve.py --out runs/probe-curve \
        --snapshots 0,150,450 --teacher [key=value overrides of the preset]

Pretrains `--preset` (default the demo's) with `Trainer.train_step`; at each snapshot step, probes
the student (and with --teacher the EMA teacher) on Fashion-MNIST: a linear probe trained on the
first `--probe-train` training images, one on `--small` of them (1% of the labels, a fixed random
draw), and kNN, all scored on the 10,000 test images. Feature kinds (all of the eval-transformed
image, no masks):

- `last_mean+cls`: mean of the last block's patch tokens and its CLS token, concatenated (the
  demo's and `data2vec probe`'s default);
- `last_cls`: the CLS token alone; `b{L-2}_mean`: the mean patch token of the second-to-last block;
- `topk_ln_mean`: every block's output layer-normed per token, averaged, then mean-pooled;
- `topk_target_mean`: the data2vec target (instance norm over tokens of each block's FFN output,
  averaged, layer norm), mean-pooled. Instance norm removes exactly the per-channel mean over
  tokens, so this pooled feature keeps only what the final layer norm puts back;
- `last_pool2x2+cls`: the last block's patch tokens average-pooled to a 2x2 grid, plus CLS;
- `last2_pool2x2+cls`: the same for the last two blocks, concatenated (the second-to-last block
  layer-normed per token, as the last block's output is).

Rows go to OUT/probe_curve.json as they are measured (`train_cpu_min` is the process CPU time
spent in training steps, which with one thread is CPU-minutes of pretraining).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from data2vec.algorithms.targets import instance_norm_time
from data2vec.config import apply_overrides
from data2vec.data.image import TransformedImages, collate_images, eval_transform
from data2vec.demo import fashion_mnist_split
from data2vec.eval.probe import extract_features, flatten_pixels, knn_accuracy, linear_probe
from data2vec.presets import get_preset
from data2vec.models import build_model
from data2vec.train.pretrain import Trainer


@torch.no_grad()
def feature_kinds(model: torch.nn.Module, dataset, batch_size: int = 500) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """{kind: (N, F)} for every feature kind of the module docstring, and the (N,) labels."""
    model.eval()
    E, grid = model.modality.num_extra_tokens, model.modality.grid
    feats: dict[str, list[torch.Tensor]] = {}
    labels = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_images):
        o = model.extract_features(batch["image"])
        labels.append(batch["label"])
        L, x = len(o.block_outputs), o.x
        patches = x[:, E:]
        ln_avg = sum(F.layer_norm(h[:, E:], h.shape[-1:]) for h in o.block_outputs) / L
        target = sum(instance_norm_time(t[:, E:]) for t in o.layer_results) / L
        target = F.layer_norm(target, target.shape[-1:])
        def pool2x2(h: torch.Tensor) -> torch.Tensor:
            return F.adaptive_avg_pool2d(h[:, E:].transpose(1, 2).reshape(len(h), -1, grid, grid), 2).flatten(1)

        pooled = pool2x2(x)
        prev = F.layer_norm(o.block_outputs[-2], o.block_outputs[-2].shape[-1:])
        row = {
            "last_mean+cls": torch.cat([patches.mean(1), x[:, E - 1]], 1),
            "last_cls": x[:, E - 1],
            f"b{L - 2}_mean": o.block_outputs[-2][:, E:].mean(1),
            "topk_ln_mean": ln_avg.mean(1),
            "topk_target_mean": target.mean(1),
            "last_pool2x2+cls": torch.cat([pooled, x[:, E - 1]], 1),
            "last2_pool2x2+cls": torch.cat([pooled, pool2x2(prev), x[:, E - 1], prev[:, E - 1]], 1),
        }
        for k, v in row.items():
            feats.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels)


def probe_all(model, train_ds, test_ds, n_small: int, kinds: list[str]) -> dict[str, dict[str, float]]:
    tr, ytr = feature_kinds(model, train_ds)
    te, yte = feature_kinds(model, test_ds)
    small = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))[:n_small]
    out = {}
    for k in tr:
        if kinds and k not in kinds:
            continue
        out[k] = {"lin": linear_probe(tr[k], ytr, te[k], yte),
                  "lin_small": linear_probe(tr[k][small], ytr[small], te[k], yte, weight_decay=1e-3),
                  "knn": knn_accuracy(tr[k], ytr, te[k], yte)}
        out[k] = {m: round(100 * v, 2) for m, v in out[k].items()}
    return out


def pixel_probe(train_ds, test_ds, n_small: int) -> dict[str, float]:
    """The same three probes on the 784 standardized pixels."""
    tr = extract_features(flatten_pixels, train_ds, collate_images)
    te = extract_features(flatten_pixels, test_ds, collate_images)
    small = torch.randperm(len(tr[1]), generator=torch.Generator().manual_seed(0))[:n_small]
    res = {"lin": linear_probe(*tr, *te), "lin_small": linear_probe(tr[0][small], tr[1][small], *te, weight_decay=1e-3),
           "knn": knn_accuracy(*tr, *te)}
    return {m: round(100 * v, 2) for m, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="data2vec2_image_fmnist")
    ap.add_argument("--out", required=True)
    ap.add_argument("--snapshots", default="0,450", help="comma-separated steps to probe at")
    ap.add_argument("--probe-train", type=int, default=10000)
    ap.add_argument("--small", type=int, default=600, help="labels of the low-label linear probe")
    ap.add_argument("--teacher", action="store_true", help="probe the EMA teacher too")
    ap.add_argument("--kinds", default="", help="comma-separated feature kinds (default: all)")
    ap.add_argument("--pixels", action="store_true", help="also probe the raw pixels (the baseline to beat)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    cfg = apply_overrides(get_preset(a.preset), a.overrides)
    snaps, kinds = sorted(int(s) for s in a.snapshots.split(",")), [k for k in a.kinds.split(",") if k]
    tf = eval_transform(cfg.model.input.image_size, cfg.data.mean, cfg.data.std)
    channels = cfg.model.input.in_chans
    train_ds = TransformedImages(fashion_mnist_split("train", channels, a.probe_train), tf)
    test_ds = TransformedImages(fashion_mnist_split("test", channels), tf)
    trainer = Trainer(cfg, a.out, force=True)
    batches, rows, wall, cpu = trainer.batch_stream(), [], 0.0, 0.0
    out = Path(a.out) / "probe_curve.json"
    if a.pixels:
        rows.append({"step": None, "pixels": pixel_probe(train_ds, test_ds, a.small)})
        print(json.dumps(rows[-1]), flush=True)
    while True:
        step = trainer.state.step
        if step in snaps:
            row = {"step": step, "train_min": wall / 60, "train_cpu_min": cpu / 60,
                   "student": probe_all(trainer.model, train_ds, test_ds, a.small, kinds)}
            if a.teacher and step > 0:
                teacher = build_model(cfg.model)
                teacher.load_state_dict(trainer.model.state_dict())
                teacher.load_state_dict(trainer.teacher.module.state_dict(), strict=False)
                row["teacher"] = probe_all(teacher, train_ds, test_ds, a.small, kinds)
            rows.append(row)
            trainer.save()  # a run stopped later keeps the weights of its last probed snapshot
            out.write_text(json.dumps({"preset": a.preset, "overrides": a.overrides, "rows": rows}, indent=1))
            print(json.dumps(row), flush=True)
        if step >= snaps[-1] or step >= cfg.train.max_steps:
            if step not in snaps:
                trainer.save()
            break
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_step(batches)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0


if __name__ == "__main__":
    main()
