"""Base-size pretraining steps on a GPU: samples/s, peak memory and model FLOP utilisation.

    python benchmarks/gpu.py                                  # image, audio and text base presets
    torchrun --nproc-per-node 8 benchmarks/gpu.py --modalities image   # per-GPU numbers under DDP
    python benchmarks/gpu.py --dry                            # tiny models on the CPU (the tests run this)

Each modality runs the real training step (`Trainer.train_step`: student, EMA teacher, decoder,
backward, clip, AdamW, teacher update) on one synthetic batch of Meta's per-GPU size, repeated,
so file reading is not measured. FLOPs per step are counted once with
torch.utils.flop_counter (forward, backward and the teacher pass, as executed); MFU is
FLOPs/s divided by the GPU's dense bf16 peak (a table below, or --peak-tflops). Prints one JSON
line per modality and, with --out, writes them to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from data2vec.config import apply_overrides
from data2vec.data.synthetic import SyntheticData, synthetic_batch
from data2vec.presets import get_preset, tiny_overrides
from data2vec.train import distributed
from data2vec.train.pretrain import Trainer

PRESETS = {"image": "data2vec2_image_base", "audio": "data2vec2_audio_base", "text": "data2vec2_text_base"}
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                    "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def gpu_peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of a GPU named like torch.cuda.get_device_name() (longest match)."""
    hits = [k for k in BF16_PEAK_TFLOPS if k.lower() in name.lower()]
    return BF16_PEAK_TFLOPS[max(hits, key=len)] if hits else None


def batch_maker(cfg, modality: str, audio_samples: int):
    """make(micro) -> a batch of the preset's shapes: 224 px images, 512-token blocks, or
    `audio_samples` 16 kHz samples per micro-batch in utterances of at most max_sample_size."""
    inp = cfg.model.input
    if modality == "text":
        T = min(cfg.data.block_size, inp.max_positions)
        return lambda b: {"tokens": torch.randint(4, inp.vocab_size, (b, T)),
                          "padding_mask": torch.zeros(b, T, dtype=torch.bool)}
    if modality == "audio":
        length = min(cfg.data.max_sample_size, audio_samples)
        return lambda b: {"audio": torch.randn(b, length), "padding_mask": torch.zeros(b, length, dtype=torch.bool)}
    return lambda b: synthetic_batch(inp, b)


def configure(modality: str, dry: bool, audio_samples: int, overrides: list[str]):
    """The preset at base size (or tiny for --dry), one micro-batch per rank at Meta's per-GPU size."""
    cfg = get_preset(PRESETS[modality])
    if dry:
        cfg = apply_overrides(cfg, tiny_overrides(cfg.model.input.kind, cfg.model.version))
    W = distributed.env().world_size
    if modality == "audio":  # a length-bucketed preset: state the per-GPU utterances here
        per_rank = 2 if dry else max(1, cfg.data.max_samples_per_batch // min(cfg.data.max_sample_size, audio_samples))
    else:
        per_rank = 2 if dry else (cfg.train.micro_batch or cfg.train.batch_size)
    return apply_overrides(cfg, [f"train.batch_size={per_rank * W}", "train.micro_batch=0", "train.log_every=1000000",
                                 "train.ckpt_every=1000000", "train.device=cpu" if dry else "train.device=auto",
                                 *overrides])


def measure(modality: str, steps: int, warmup: int, dry: bool, audio_samples: int, overrides: list[str],
            peak_tflops: float | None) -> dict[str, Any]:
    cfg = configure(modality, dry, audio_samples, overrides)
    data = SyntheticData(batch_maker(cfg, modality, 16_000 if dry else audio_samples), cfg.train.batch_size)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(cfg, run, force=True, data=data)
        dev = trainer.device
        batches = trainer.batch_stream()
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(batches)  # also the first warm-up step
        flops = counter.get_total_flops()
        for _ in range(warmup - 1):
            trainer.train_step(batches)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            logs = trainer.train_step(batches)
        float(logs["loss"])  # one host sync at the end, as a logging step would
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        if trainer.metrics is not None:
            trainer.metrics.close()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    peak = peak_tflops or (gpu_peak_tflops(name) if dev.type == "cuda" else None)
    W = trainer.dist.world_size
    per_rank = data.micro * trainer.accum
    achieved = flops * steps / seconds  # this rank's FLOP/s
    return {
        "modality": modality, "preset": PRESETS[modality], "dry": dry, "device": name, "world_size": W,
        "bf16": trainer.bf16, "compile": cfg.train.compile, "parallel": cfg.train.parallel,
        "samples_per_step_per_rank": per_rank, "steps": steps, "seconds": round(seconds, 3),
        "samples_per_s_per_rank": round(per_rank * steps / seconds, 2),
        "samples_per_s": round(per_rank * steps * W / seconds, 2),
        "tflop_per_step_per_rank": round(flops / 1e12, 4), "achieved_tflops_per_rank": round(achieved / 1e12, 3),
        "mfu": round(achieved / (peak * 1e12), 4) if peak else None, "peak_bf16_tflops": peak,
        "peak_memory_gib": round((torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
                                  else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modalities", default="image,audio,text")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    p.add_argument("--audio-samples", type=int, default=250_000, help="16 kHz samples per utterance (15.6 s)")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the device, if not in the table")
    p.add_argument("--dry", action="store_true", help="tiny models on the CPU: checks the script, measures nothing")
    p.add_argument("--out", help="also write the results to this JSON file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.compile=true train.parallel=fsdp")
    args = p.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU here; use --dry to check the script on the CPU", file=sys.stderr)
        return 2
    results = []
    with distributed.distributed_run("cpu" if args.dry else "auto") as (env, _):
        for modality in args.modalities.split(","):
            r = measure(modality, args.steps, max(1, args.warmup), args.dry, args.audio_samples, args.overrides,
                        args.peak_tflops)
            results.append(r)
            if env.is_main:
                print(json.dumps(r), flush=True)
    if args.out and env.is_main:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
