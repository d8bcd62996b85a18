"""data2vec 2.0 versus 1.0 on the same data, encoder size and wall-clock budget, in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/versions.py --minutes 8 --probes 4 \
        --out runs/versions --doc docs/benchmarks-versions.md

For each run in RUNS (data2vec2_image_fmnist, data2vec_image_fmnist: both 6 blocks of width 128 on
Fashion-MNIST, batch 64; and an ablation, 1.0's student on 2.0's ViT):
1. time a few steps to estimate its step rate, and give it a schedule (warm-up, cosine lr, EMA
   anneal) that ends when the budget does;
2. train with the library's own `Trainer.train_step`, pausing the clock at `--probes` evenly
   spaced points of the budget for a linear probe of the student encoder on Fashion-MNIST;
3. report samples/s, masked views/s, and probe accuracy against training minutes.
Writes results.json and versions.png under --out, and the markdown table to --doc.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from data2vec.config import apply_overrides
from data2vec.demo import fashion_mnist_split
from data2vec.data.image import TransformedImages, collate_images, eval_transform
from data2vec.eval.probe import encoder_features, extract_features, linear_probe
from data2vec.presets import get_preset
from data2vec.train.pretrain import Trainer
from image_throughput import seconds_per_step  # benchmarks/ is the script's folder

# (label, preset, overrides). The third run is an ablation: data2vec 2.0's ViT, targets, loss,
# masks and teacher, trained with 1.0's student (every patch encoded, masked ones as a learned
# mask embedding, a Linear head, one view, no CLS loss), so only the student's path differs.
RUNS = (
    ("2.0", "data2vec2_image_fmnist", []),
    ("1.0", "data2vec_image_fmnist", []),
    ("1.0 student, 2.0 ViT", "data2vec2_image_fmnist",
     ["model.version=1", "model.clone_batch=1", "model.decoder.projection_layers=1", "model.loss.cls_weight=0"]),
)


def probe(model: torch.nn.Module, cfg, probe_train: int) -> float:
    """Linear-probe top-1 of the student on the Fashion-MNIST test set."""
    tf = eval_transform(cfg.model.input.image_size, cfg.data.mean, cfg.data.std)
    train = TransformedImages(fashion_mnist_split("train", cfg.model.input.in_chans, probe_train), tf)
    test = TransformedImages(fashion_mnist_split("test", cfg.model.input.in_chans), tf)
    fn = encoder_features(model, "mean+cls")
    with torch.no_grad():
        tr, te = extract_features(fn, train, collate_images), extract_features(fn, test, collate_images)
    return linear_probe(tr[0], tr[1], te[0], te[1])


def budget_overrides(cfg, steps: int) -> list[str]:
    """Schedules that end with the budget: 9% warm-up, cosine to 0, 2.0's EMA anneal over the run."""
    out = [f"train.max_steps={steps}", f"train.warmup_steps={max(5, int(0.09 * steps))}",
           "train.time_limit_min=0", f"train.ckpt_every={10 * steps}", "train.log_every=25"]
    if cfg.model.teacher.anneal_steps > 0:
        out.append(f"model.teacher.anneal_steps={steps}")
    return out


def run_version(label: str, preset: str, overrides: list[str], minutes: float, probes: int, probe_train: int,
                out: Path) -> dict:
    base = apply_overrides(get_preset(preset), overrides)
    steps = max(10, int(minutes * 60 / seconds_per_step(base, steps=8, warmup=2)))
    cfg = apply_overrides(base, budget_overrides(base, steps))
    trainer = Trainer(cfg, out / label.replace(" ", "_").replace(",", ""), force=True)
    batches = trainer.batch_stream()
    marks = [minutes * 60 * (i + 1) / probes for i in range(probes)]
    curve = [{"minutes": 0.0, "step": 0, "linear_top1": probe(trainer.model, cfg, probe_train)}]
    train_s, samples, views = 0.0, 0, 0.0
    while trainer.state.step < steps and marks:
        t0 = time.perf_counter()
        logs = trainer.train_step(batches)
        train_s += time.perf_counter() - t0
        samples += cfg.train.batch_size
        views += logs["masked_views"]
        if trainer.state.step % cfg.train.log_every == 0:
            trainer.metrics.log(trainer.state.step, {**logs, "train_minutes": train_s / 60})
        if train_s >= marks[0] or trainer.state.step == steps:
            marks.pop(0)
            acc = probe(trainer.model, cfg, probe_train)
            curve.append({"minutes": train_s / 60, "step": trainer.state.step, "linear_top1": acc})
            print(f"{label}: {train_s / 60:.2f} min, step {trainer.state.step}/{steps}, probe {100 * acc:.2f}%",
                  flush=True)
    trainer.metrics.close()
    n_params = sum(p.numel() for n, p in trainer.model.named_parameters() if n.split(".")[0] in ("modality", "encoder"))
    return {"label": label, "preset": preset, "overrides": overrides, "version": cfg.model.version,
            "planned_steps": steps, "steps": trainer.state.step, "train_seconds": train_s,
            "samples_per_s": samples / train_s, "views_per_s": views / train_s, "encoder_parameters": n_params,
            "curve": curve}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        c = r["curve"]
        ax.plot([p["minutes"] for p in c], [100 * p["linear_top1"] for p in c], marker="o",
                label=f"{r['label']} ({r['preset']})")
    ax.set_xlabel("training wall-clock (min, probes excluded)"), ax.set_ylabel("linear probe top-1 (%)")
    ax.set_title("Fashion-MNIST, same encoder and budget"), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(results: list[dict]) -> str:
    n = len(results[0]["curve"]) - 1
    lines = ["| run | preset | encoder params | steps | train min | samples/s | masked views/s | probe at start | "
             + " | ".join(f"probe at {i}/{n} budget" for i in range(1, n + 1)) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(results[0]["curve"])]
    for r in results:
        probes = " | ".join(f"{100 * p['linear_top1']:.2f}%" for p in r["curve"])
        lines.append(f"| {r['label']} | {r['preset']} | {r['encoder_parameters'] / 1e6:.2f}M | {r['steps']} | "
                     f"{r['train_seconds'] / 60:.1f} | {r['samples_per_s']:.1f} | {r['views_per_s']:.1f} | {probes} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=8.0, help="training budget per version")
    p.add_argument("--probes", type=int, default=4, help="probe points within the budget")
    p.add_argument("--probe-train", type=int, default=10000, help="Fashion-MNIST training images for the probe")
    p.add_argument("--out", default="runs/versions")
    p.add_argument("--doc", default="", help="also write the markdown table here")
    p.add_argument("--render", action="store_true", help="only redraw the table and plot from --out/results.json")
    args = p.parse_args()
    out = Path(args.out)
    if args.render:
        saved = json.loads((out / "results.json").read_text())
        plot(saved["results"], out / "versions.png")
        print(f"{table(saved['results'])}\n\n({saved['env']})")
        return
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = [run_version(label, preset, over, args.minutes, args.probes, args.probe_train, out)
               for label, preset, over in RUNS]
    env = (f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
           f"{torch.get_num_threads()} thread(s), fp32")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "env": env, "results": results}, indent=2))
    plot(results, out / "versions.png")
    text = f"{table(results)}\n\n({env}; whole run {(time.perf_counter() - t0) / 60:.1f} min)\n"
    print(text)
    if args.doc:
        Path(args.doc).write_text(text)


if __name__ == "__main__":
    main()
