"""Pretraining throughput of an image preset, with and without bf16 autocast, in one run.

    python benchmarks/image_throughput.py --preset data2vec2_image_fmnist --steps 20

Prints images/s and masked views/s (M views per image) for fp32 and bf16, measured over the same
steps after a warm-up, and their ratio. Machines are shared and noisy: compare ratios within a run.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from data2vec.config import apply_overrides
from data2vec.presets import get_preset
from data2vec.train.pretrain import Trainer


def seconds_per_step(cfg, steps: int, warmup: int) -> float:
    """Mean wall-clock of full training steps on real batches, after `warmup` untimed ones."""
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(cfg, run)
        batches = trainer.batch_stream()
        for _ in range(warmup):
            trainer.train_step(batches)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batches)
        dt = time.perf_counter() - t0
        trainer.metrics.close()
    return dt / steps


def measure(preset: str, bf16: bool, steps: int, warmup: int, overrides: list[str]) -> dict:
    cfg = apply_overrides(get_preset(preset), [f"train.bf16={bf16}", *overrides])
    dt = seconds_per_step(cfg, steps, warmup) * steps
    images = steps * cfg.train.batch_size
    return {"bf16": bf16, "steps": steps, "seconds": dt, "images_per_s": images / dt,
            "masked_views_per_s": images * cfg.model.clone_batch / dt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="data2vec2_image_fmnist")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    rows = [measure(args.preset, bf16, args.steps, args.warmup, args.overrides) for bf16 in (False, True)]
    print(f"device: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, cpu capability {torch.backends.cpu.get_cpu_capability()}")
    print("| precision | images/s | masked views/s |\n|---|---|---|")
    for r in rows:
        print(f"| {'bf16 autocast' if r['bf16'] else 'fp32'} | {r['images_per_s']:.1f} | {r['masked_views_per_s']:.1f} |")
    print(f"bf16 / fp32 throughput ratio: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
