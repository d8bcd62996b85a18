"""Our encoders against transformers' Data2Vec* models at identical architecture and weights.

    OMP_NUM_THREADS=1 python benchmarks/vs_transformers.py --compile       # the full Base table
    OMP_NUM_THREADS=1 python benchmarks/vs_transformers.py --depth 2 --small   # a quick look

For each data2vec 1.0 Base preset (BEiT-B image, RoBERTa-B text, wav2vec2-B audio) our model is
built from the preset, exported with `export_hf` and loaded back as the transformers model, so
both hold the same weights (the outputs are compared before timing). One timed step is forward +
backward of the whole encoder (mean of the last hidden state as the loss), in eval mode so that
dropout, layer drop and SpecAugment are off, parameters trainable. Ours and theirs alternate step
by step (the order flips every repeat) and each reports the median of `--repeats` steps, in fp32
and under bf16 autocast. Ratio = transformers' time / ours: above 1 means ours is faster. On a
shared machine compare the ratios of one run, not seconds across runs.

`--compile` adds a third model to the interleaving: a copy of ours with every Transformer block
compiled as `train.compile=true` does (`compile_blocks`), against the same eager transformers
(as a user runs it). Its compile time, its largest difference from eager ours and the graphs
compiled during the timed steps (0: no recompiles) are reported with it.

`--floor` adds what no implementation of the same arithmetic can beat: the step's matrix-product
FLOPs (Linear, attention and convolution, forward and backward, counted by
`torch.utils.flop_counter`) divided by this machine's rate for one large matrix product of the
row's shape and precision. Transformers' time over that floor is the largest ratio any model that
computes the same numbers could reach, were everything but the matrix products free.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import transformers

from data2vec.algorithms.common import encode_unmasked
from data2vec.algorithms.data2vec1 import Data2Vec1Model
from data2vec.checkpoints.huggingface import export_hf
from data2vec.config import apply_overrides
from data2vec.presets import get_preset
from data2vec.train.compilation import compile_blocks

# row name -> (our preset, transformers class, input description)
ROWS = {
    "image": ("data2vec_image_base", "Data2VecVisionModel", "BEiT-B image"),
    "text": ("data2vec_text_base", "Data2VecTextModel", "RoBERTa-B text"),
    "audio": ("data2vec_audio_base", "Data2VecAudioModel", "wav2vec2-B audio"),
}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> dict[str, object]:
    """CPU model, the speed-relevant flags present and torch's capability string."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": name, "flags": [f for f in CPU_FLAGS if f in flags],
            "torch_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def make_input(row: str, cfg, args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    g = torch.Generator().manual_seed(0)
    if row == "image":
        s = cfg.model.input.image_size
        return torch.randn(args.batch, 3, s, s, generator=g), f"{args.batch} x {s}x{s}"
    if row == "text":
        tokens = torch.randint(4, cfg.model.input.vocab_size, (args.batch, args.tokens), generator=g)
        tokens[:, 0] = 0
        return tokens, f"{args.batch} x {args.tokens} tokens"
    n = int(args.seconds * 16000)
    return torch.randn(max(1, args.batch // 2), n, generator=g), f"{max(1, args.batch // 2)} x {args.seconds:g} s"


def build_pair(row: str, args: argparse.Namespace, folder: Path):
    """Our model and the transformers model with the same weights, both in eval mode."""
    preset, hf_cls, _ = ROWS[row]
    overrides = [f"model.encoder.depth={args.depth}"] if args.depth else []
    if args.small and row == "image":
        overrides += ["model.input.image_size=112", "model.input.num_mask_patches=20"]
    cfg = apply_overrides(get_preset(preset), overrides)
    torch.manual_seed(0)
    ours = Data2Vec1Model(cfg.model).eval()
    export_hf(ours, cfg.model, None, folder)
    extra = {} if row == "audio" else {"add_pooling_layer": False}  # the pooler is not part of the encoder
    theirs = getattr(transformers, hf_cls).from_pretrained(folder, **extra).eval()
    return cfg, ours, theirs


def forward_fn(model, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The encoder's last hidden state for `x`, ours or transformers'."""
    if isinstance(model, Data2Vec1Model):
        return lambda: encode_unmasked(model.modality, model.encoder, x).x
    return lambda: model(x).last_hidden_state


def max_diff(f_a: Callable, f_b: Callable, bf16: bool = False, grad: bool = False) -> float:
    """Largest output difference. `grad`: with autograd on, as in the timed steps (a compiled
    model then reuses its training graph instead of compiling an inference one)."""
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    with torch.set_grad_enabled(grad), amp:
        return (f_a().detach().float() - f_b().detach().float()).abs().max().item()


def timed_step(model: torch.nn.Module, forward: Callable, bf16: bool) -> float:
    """Seconds for zero-grad, forward, mean-loss backward."""
    model.zero_grad(set_to_none=True)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    t0 = time.perf_counter()
    with amp:
        loss = forward().float().mean()
    loss.backward()
    return time.perf_counter() - t0


def matmul_rate(rows: int, dim: int, bf16: bool, repeats: int = 5) -> float:
    """FLOP/s of a (rows x dim) @ (dim x 4 dim) product, the shape of a block's first MLP layer,
    in the given precision: the fastest this machine runs the step's matrix products."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(rows, dim, dtype=dtype), torch.randn(dim, 4 * dim, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * rows * dim * 4 * dim / min(times)


def step_floor(model: torch.nn.Module, forward: Callable, bf16: bool) -> dict[str, float]:
    """Matrix-product FLOPs of one step and the seconds they take at `matmul_rate`."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        rows, dim = forward().flatten(0, -2).shape
    with FlopCounterMode(display=False) as counter:
        timed_step(model, forward, bf16)
    flops, rate = counter.get_total_flops(), matmul_rate(rows, dim, bf16)
    return {"gflop": flops / 1e9, "rate_gflops": rate / 1e9, "floor_s": flops / rate}


def compiled_graphs() -> int:
    """Graphs dynamo has compiled so far in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compare(row: str, args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg, ours, theirs = build_pair(row, args, Path(tmp))
    x, shape = make_input(row, cfg, args)
    models = {"ours": ours, "transformers": theirs}
    if args.compile:
        # Every row's blocks share one code object; dynamo keeps at most `recompile_limit` (8)
        # graphs for it and runs the rest eager, so each row starts from an empty cache.
        torch._dynamo.reset()
        models["compiled"] = copy.deepcopy(ours)
        compile_blocks(models["compiled"])
    fns = {name: forward_fn(m, x) for name, m in models.items()}
    result = {"row": row, "model": ROWS[row][2], "preset": ROWS[row][0], "input": shape,
              "depth": cfg.model.encoder.depth, "max_abs_diff": max_diff(fns["ours"], fns["transformers"]),
              "attn_implementation": getattr(theirs.config, "_attn_implementation", "?")}
    for precision in args.precisions:
        bf16, res = precision == "bf16", {}
        if args.compile:  # the first step compiles (forward and backward); time it on its own
            t0 = time.perf_counter()
            timed_step(models["compiled"], fns["compiled"], bf16)
            res["compile_s"] = time.perf_counter() - t0
            res["compiled_max_abs_diff"] = max_diff(fns["compiled"], fns["ours"], bf16, grad=True)
            graphs = compiled_graphs()
        for _ in range(args.warmup):
            for name in models:
                timed_step(models[name], fns[name], bf16)
        times = {name: [] for name in models}
        for i in range(args.repeats):
            order = list(models) if i % 2 == 0 else list(models)[::-1]
            for name in order:
                times[name].append(timed_step(models[name], fns[name], bf16))
        med = {name: statistics.median(t) for name, t in times.items()}
        res.update(ours_s=med["ours"], theirs_s=med["transformers"], ratio=med["transformers"] / med["ours"],
                   ours_all=times["ours"], theirs_all=times["transformers"])
        line = f"{row} {precision}: ours {med['ours']:.3f} s, transformers {med['transformers']:.3f} s, " \
               f"ratio {res['ratio']:.2f}x"
        if args.compile:
            res.update(compiled_s=med["compiled"], compiled_ratio=med["transformers"] / med["compiled"],
                       compiled_all=times["compiled"], recompiles=compiled_graphs() - graphs)
            line += f"; ours compiled {med['compiled']:.3f} s, ratio {res['compiled_ratio']:.2f}x " \
                    f"(compile {res['compile_s']:.0f} s, max diff {res['compiled_max_abs_diff']:.2g}, " \
                    f"recompiles {res['recompiles']})"
        if args.floor:
            res.update(step_floor(models["ours"], fns["ours"], bf16))
            res["ceiling_ratio"] = res["theirs_s"] / res["floor_s"]
            line += f"; floor {res['floor_s']:.3f} s ({res['gflop']:.0f} GFLOP at {res['rate_gflops']:.0f} GFLOP/s), " \
                    f"largest possible ratio {res['ceiling_ratio']:.2f}x"
        result[precision] = res
        print(line, file=sys.stderr, flush=True)
    return result


def profile_ops(row: str, args: argparse.Namespace, top: int = 8) -> None:
    """Print the torch profiler's top operators (self CPU time) of one step of each model."""
    from torch.profiler import profile

    with tempfile.TemporaryDirectory() as tmp:
        cfg, ours, theirs = build_pair(row, args, Path(tmp))
    x, _ = make_input(row, cfg, args)
    if args.compile:
        compile_blocks(ours)
    for name, model in (("ours", ours), ("transformers", theirs)):
        fn = forward_fn(model, x)
        for precision in args.precisions:
            timed_step(model, fn, precision == "bf16")
            with profile() as prof:
                timed_step(model, fn, precision == "bf16")
            ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
            print(f"{row} {name} {precision}:\n{ops}")


def table(results: list[dict], precisions: list[str], compiled: bool) -> str:
    names = {"fp32": "fp32", "bf16": "bf16 autocast"}
    heads = [h for p in precisions for h in ([names[p], f"{names[p]}, ours compiled"] if compiled else [names[p]])]
    lines = ["| model (our preset) | input | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for r in results:
        cells = []
        for p in precisions:
            c = r[p]
            cells.append(f"{c['ratio']:.2f}x (ours {c['ours_s']:.2f} s, theirs {c['theirs_s']:.2f} s)")
            if compiled:
                cells.append(f"{c['compiled_ratio']:.2f}x (ours {c['compiled_s']:.2f} s; compile {c['compile_s']:.0f} s)")
        lines.append(f"| {r['model']}, `{r['preset']}` | {r['input']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floor_table(results: list[dict], precisions: list[str]) -> str:
    lines = ["| model | precision | matrix products per step | matmul rate | floor | ours | transformers | "
             "largest possible ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for p in precisions:
            c = r[p]
            lines.append(f"| {r['model']} | {p} | {c['gflop']:.0f} GFLOP | {c['rate_gflops']:.0f} GFLOP/s | "
                         f"{c['floor_s']:.2f} s | {c['ours_s']:.2f} s | {c['theirs_s']:.2f} s | "
                         f"{c['ceiling_ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="image,text,audio", help="comma-separated subset of image,text,audio")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=4, help="images / text rows; audio uses half")
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--depth", type=int, default=0, help="encoder blocks (0: the preset's)")
    p.add_argument("--small", action="store_true", help="112 px images (quick looks while iterating)")
    p.add_argument("--compile", action="store_true", help="also time ours with compiled blocks (train.compile=true)")
    p.add_argument("--floor", action="store_true", help="also count the matrix-product FLOPs and their floor time")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--profile", action="store_true", help="instead of timing, print each model's top operators")
    args = p.parse_args()
    args.precisions = args.precisions.split(",")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    info = cpu_info()
    print(json.dumps(info), file=sys.stderr)
    if args.profile:
        for row in args.rows.split(","):
            profile_ops(row, args)
        return
    t0, load = time.perf_counter(), [os.getloadavg()[0]]
    results = []
    for row in args.rows.split(","):
        results.append(compare(row, args))
        load.append(os.getloadavg()[0])
        if args.json:  # after every row, so that a long run that is stopped keeps what it measured
            args.json.write_text(json.dumps({"machine": info, "load": load, "results": results}, indent=1))
    print(table(results, args.precisions, args.compile))
    if args.floor:
        print("\n" + floor_table(results, args.precisions))
    print(f"\nCPU: {info['cpu']}; flags: {' '.join(info['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}; "
          f"torch capability {info['torch_capability']}; {info['threads']} thread(s); torch {info['torch']}, "
          f"transformers {info['transformers']}; median of {args.repeats}; "
          f"{time.perf_counter() - t0:.0f} s in all; 1-minute load average at the start and after each row: "
          f"{', '.join(f'{v:.1f}' for v in load)}")


if __name__ == "__main__":
    main()
