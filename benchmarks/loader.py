"""Does data loading keep up with training? Loader throughput alone vs training-step throughput.

    OMP_NUM_THREADS=1 python benchmarks/loader.py          # every case below, a few minutes

For each case the preset's own data pipeline reads real files (bench_data.py): JPEG folders
(decode, RandomResizedCrop, flip, normalize), WAV folders at 22.05 kHz and 44.1 kHz (decode,
resample to 16 kHz with soxr, crop, normalize) and the fortunes text (tokenized blocks), with
`train.num_workers=auto`. Loader rate: samples per second drawn from `data.batches()` after its
first batch (worker start-up excluded). Step rate: samples per second of `Trainer.train_step` fed
from batches loaded beforehand, so it excludes loading. Ratio = loader rate / step rate; the
loader must be at least 3x faster. Base presets run at a CPU-sized batch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_data  # noqa: E402

from data2vec.config import apply_overrides  # noqa: E402
from data2vec.presets import get_preset  # noqa: E402
from data2vec.presets.image import FMNIST_MEAN, FMNIST_STD  # noqa: E402
from data2vec.train.data import default_num_workers  # noqa: E402
from data2vec.train.pretrain import Trainer  # noqa: E402


def cases(root: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (preset, overrides); data folders are made on first use."""
    jpeg = lambda size: bench_data.jpeg_folder(root / f"jpeg{size}", 256, size)  # noqa: E731
    wav = lambda rate: bench_data.wav_folder(root / f"wav{rate}", 16, 10.0, rate)  # noqa: E731
    text = bench_data.text_path
    base_audio = ["data.max_samples_per_batch=160000", "data.buckets_per_step=0", "train.batch_size=1"]
    return {
        "image-base-jpeg400": ("data2vec2_image_base", lambda: [f"data.path={jpeg(400)}", "train.batch_size=2",
                                                                "train.micro_batch=0"]),
        "image-fmnist-jpeg28": ("data2vec2_image_fmnist", lambda: [
            f"data.path={jpeg(28)}", f"data.mean={FMNIST_MEAN[0]}", f"data.std={FMNIST_STD[0]}"]),
        "audio-base-22k": ("data2vec2_audio_base", lambda: [f"data.path={wav(22050)}", *base_audio]),
        "audio-base-44k": ("data2vec2_audio_base", lambda: [f"data.path={wav(44100)}", *base_audio]),
        "audio-small-22k": ("data2vec2_audio_small", lambda: [f"data.path={wav(22050)}"]),
        "audio-small-44k": ("data2vec2_audio_small", lambda: [f"data.path={wav(44100)}"]),
        "text-base-fortunes": ("data2vec2_text_base", lambda: [f"data.path={text()}", "data.doc_mode=percent",
                                                                "train.batch_size=1", "train.micro_batch=0"]),
        "text-fortunes": ("data2vec2_text_fortunes", lambda: []),
    }


def _count(batch: dict[str, Any], key: str) -> int:
    return int(batch[key].shape[0]) if key in batch else 0


def rates(cfg, key: str, batches: int, steps: int, warmup: int) -> tuple[float, float]:
    """(loader, step) samples per second: the trainer's own batch stream alone, after its first
    batch; then full training steps on batches loaded beforehand."""
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(cfg, run)
        stream = trainer.batch_stream()
        next(stream)  # worker start-up
        t0, n = time.perf_counter(), 0
        for batch in itertools.islice(stream, batches):
            n += _count(batch, key)
        load = n / (time.perf_counter() - t0)
        ready = [b for b in itertools.islice(stream, warmup + steps) if key in b]
        for b in ready[:warmup]:
            trainer.train_step(iter([b]))
        t0, n = time.perf_counter(), 0
        for b in ready[warmup:]:
            trainer.train_step(iter([b]))
            n += _count(b, key)
        step = n / (time.perf_counter() - t0)
        trainer.metrics.close()
    return load, step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="", help="comma-separated names (default: all)")
    p.add_argument("--batches", type=int, default=20, help="loader batches timed")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=Path("runs/bench-data"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    todo = cases(args.data_dir)
    names = [n.strip() for n in args.cases.split(",")] if args.cases else list(todo)
    t0 = time.perf_counter()
    rows = []
    for name in names:
        preset, extra = todo[name]
        cfg = apply_overrides(get_preset(preset), ["train.device=cpu", *extra()])
        key = {"image": "image", "audio": "audio", "text": "tokens"}[cfg.data.kind]
        load, step = rates(cfg, key, args.batches, args.steps, args.warmup)
        rows.append({"case": name, "preset": preset, "loader": load, "step": step, "ratio": load / step})
        print(json.dumps(rows[-1]), file=sys.stderr)  # partial results survive a crash of a later case
    print("| case (preset) | loader samples/s | training samples/s | loader / step |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} (`{r['preset']}`) | {r['loader']:.1f} | {r['step']:.2f} | {r['ratio']:.1f}x |")
    print(f"\ntrain.num_workers=auto -> {default_num_workers()} loader process(es); "
          f"{torch.get_num_threads()} training thread(s); {time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
