"""The demo: pretrain on Fashion-MNIST, then compare linear probes on raw pixels, the
randomly initialised encoder and the pretrained encoder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import torch

from data2vec.checkpoints.load import load_model
from data2vec.config import PretrainConfig, apply_overrides
from data2vec.data.image import FASHION_MNIST_DIR, IdxImages, TransformedImages, collate_images, eval_transform
from data2vec.eval.probe import encoder_features, extract_features, flatten_pixels, probe_report
from data2vec.presets import get_preset
from data2vec.train.logging import read_metrics
from data2vec.models import build_model
from data2vec.train.pretrain import pretrain

DEMO_PRESET = "data2vec2_image_fmnist"


def fashion_mnist_split(split: str, channels: int, limit: int = 0) -> IdxImages:
    prefix = "train" if split == "train" else "t10k"
    path = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the Debian package dataset-fashion-mnist (make setup does)")
    return IdxImages(path, limit=limit, channels=channels)


def probe_table(cfg: PretrainConfig, checkpoint: Path, probe_train: int, weights: str, pooling: str) -> list[dict]:
    """Linear-probe/kNN rows for raw pixels, the random-init encoder and the pretrained one."""
    inp, data = cfg.model.input, cfg.data
    tf = eval_transform(inp.image_size, data.mean, data.std)
    train = TransformedImages(fashion_mnist_split("train", inp.in_chans, probe_train), tf)
    test = TransformedImages(fashion_mnist_split("test", inp.in_chans), tf)
    torch.manual_seed(cfg.train.seed)  # the same initialisation the pretraining run started from
    random_model = build_model(cfg.model)
    encoders = [
        ("raw pixels", flatten_pixels),
        ("random-weight encoder", encoder_features(random_model, pooling)),
        (f"pretrained encoder ({weights})", encoder_features(load_model(checkpoint, weights).model, pooling)),
    ]
    rows = []
    for name, fn in encoders:
        t0 = time.perf_counter()
        tr = extract_features(fn, train, collate_images)
        te = extract_features(fn, test, collate_images)
        rows.append({"features": name, "dim": tr[0].shape[1], **probe_report(tr, te),
                     "seconds": time.perf_counter() - t0})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| features | dim | linear probe top-1 | kNN top-1 |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['features']} | {r['dim']} | {100 * r['linear_top1']:.2f}% | {100 * r['knn_top1']:.2f}% |")
    return "\n".join(lines)


def plot_curves(metrics_path: Path, out_png: Path) -> None:
    """Loss parts and the collapse monitors (target/prediction std) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(steps, [r["loss_regression"] for r in rows], label="regression loss")
    if "loss_cls" in rows[0]:
        a.plot(steps, [r["loss_cls"] for r in rows], label="CLS loss")
    a.set_xlabel("step"), a.set_ylabel("loss"), a.set_yscale("log"), a.legend(), a.set_title("loss")
    b.plot(steps, [r["target_std"] for r in rows], label="target std")
    b.plot(steps, [r["pred_std"] for r in rows], label="prediction std")
    b.set_xlabel("step"), b.legend(), b.set_title("collapse monitors")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def run_demo(
    out_dir: str | Path, preset: str = DEMO_PRESET, overrides: Optional[list[str]] = None,
    probe_train: int = 20000, weights: str = "student", pooling: str = "grid+cls", force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain `preset` into out_dir/pretrain, probe, print the table, write the plot."""
    out = Path(out_dir)
    cfg = apply_overrides(get_preset(preset), overrides or [])
    t0 = time.perf_counter()
    summary = pretrain(cfg, out / "pretrain", force=force, progress=progress)
    t_pre = time.perf_counter() - t0
    rows = probe_table(cfg, Path(summary["checkpoint"]), probe_train, weights, pooling)
    plot_curves(out / "pretrain" / "metrics.jsonl", out / "curves.png")
    result = {"preset": preset, "overrides": overrides or [], "pretrain_seconds": t_pre, "pretrain": summary,
              "probe_train_images": probe_train, "pooling": pooling, "rows": rows,
              "total_seconds": time.perf_counter() - t0}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"\nFashion-MNIST test accuracy ({probe_train or 60000} probe training images, "
          f"{summary['steps']} pretraining steps in {t_pre / 60:.1f} min):\n")
    print(format_table(rows))
    print(f"\ncurves: {out / 'curves.png'}   results: {out / 'results.json'}")
    return result
