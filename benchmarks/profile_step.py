"""Where one data2vec 2.0 pretraining step spends its time, for the base image, audio and text presets.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --steps 2     # all three, a few minutes

Runs the real `Trainer.train_step` of each `*_base` preset on real files (JPEG folder, 22.05 kHz
WAVs, the fortunes corpus; see bench_data.py) with a CPU-sized batch, and times each phase by
wrapping the functions the step calls: data, masking, teacher forward + targets, student
forward (local features; context encoder + shared blocks), decoder forward, loss, backward
(student and decoder together), gradient clipping, optimizer, EMA update. A call made inside
another timed phase counts in the outer one (e.g. the teacher's use of the student's modality).
Precision follows `train.bf16=auto`. Shares are of the median step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_data  # noqa: E402

import data2vec.algorithms.data2vec2 as d2v2  # noqa: E402
from data2vec.config import apply_overrides  # noqa: E402
from data2vec.presets import get_preset  # noqa: E402
from data2vec.train.pretrain import Trainer  # noqa: E402

PHASES = ["data", "masking", "teacher forward + targets", "student local features", "student encoder forward",
          "decoder forward", "loss", "backward (student + decoder)", "gradient clipping", "optimizer step",
          "EMA update", "other"]


class PhaseTimer:
    """Wall-clock seconds per phase; nested timed calls count in the outermost phase."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.active: str | None = None
        self.sync = sync

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.active is not None:
                return fn(*args, **kwargs)
            self.sync()
            self.active, t0 = name, time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.totals[name] += time.perf_counter() - t0
                self.active = None

        return timed

    def batches(self, it: Iterator) -> Iterator:
        take = self.wrap("data", lambda: next(it))
        while True:
            yield take()


def instrument(trainer: Trainer, timer: PhaseTimer, patch: Callable[[Any, str, Any], None]) -> None:
    """Wrap the calls of one training step in `timer` phases (`patch(obj, attr, value)` restores later)."""
    model = trainer.model
    for obj, attr, phase in [
        (model.modality, "make_mask", "masking"), (d2v2, "make_mask_info", "masking"),
        (model, "teacher_targets", "teacher forward + targets"),
        (model.modality, "local_features", "student local features"),
        (model.modality, "contextualize", "student encoder forward"), (model, "encoder", None),
        (d2v2, "decoder_input", "decoder forward"), (model, "decoder", None),
        (d2v2, "regression_loss", "loss"), (d2v2, "feature_std", "loss"),
        (torch.Tensor, "backward", "backward (student + decoder)"),
        (torch.nn.utils, "clip_grad_norm_", "gradient clipping"),
        (trainer.optimizer, "step", "optimizer step"), (trainer.optimizer, "zero_grad", "optimizer step"),
        (trainer.teacher, "update", "EMA update"),
    ]:
        if phase is None:  # a submodule: time its forward
            module = getattr(obj, attr)
            name = "student encoder forward" if attr == "encoder" else "decoder forward"
            patch(module, "forward", timer.wrap(name, module.forward))
        else:
            patch(obj, attr, timer.wrap(phase, getattr(obj, attr)))


def profile(kind: str, cfg, steps: int, warmup: int) -> dict[str, Any]:
    saved: list[tuple[Any, str, Any, bool]] = []

    def patch(obj: Any, attr: str, value: Any) -> None:
        saved.append((obj, attr, getattr(obj, attr), attr in vars(obj)))
        setattr(obj, attr, value)

    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(cfg, run)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        timer = PhaseTimer(sync)
        instrument(trainer, timer, patch)
        try:
            batches = timer.batches(trainer.batch_stream())
            per_step = []
            for i in range(warmup + steps):
                timer.totals.clear()
                t0 = time.perf_counter()
                logs = trainer.train_step(batches)
                total = time.perf_counter() - t0
                if i >= warmup:
                    per_step.append({**timer.totals, "other": total - sum(timer.totals.values()), "total": total})
        finally:
            for obj, attr, old, own in reversed(saved):
                setattr(obj, attr, old) if own else delattr(obj, attr)
            trainer.metrics.close()
    median = sorted(per_step, key=lambda r: r["total"])[len(per_step) // 2]
    return {"kind": kind, "precision": "bf16 autocast" if trainer.bf16 else "fp32", "step_s": median["total"],
            "phases": {p: median.get(p, 0.0) for p in PHASES}, "views": float(logs["masked_views"]),
            "all_totals": [r["total"] for r in per_step]}


def configs(kinds: list[str], data_dir: Path) -> dict[str, Any]:
    overrides = {
        "image": ("data2vec2_image_base", lambda: [f"data.path={bench_data.jpeg_folder(data_dir / 'jpeg', 64)}",
                                                   "train.batch_size=2", "train.micro_batch=0"]),
        "audio": ("data2vec2_audio_base", lambda: [
            f"data.path={bench_data.wav_folder(data_dir / 'wav22k', 8, 10.0, 22050)}",
            "data.max_samples_per_batch=160000", "data.buckets_per_step=0", "train.batch_size=1"]),
        "text": ("data2vec2_text_base", lambda: [f"data.path={bench_data.text_path()}", "data.doc_mode=percent",
                                                 "train.batch_size=1", "train.micro_batch=0"]),
    }
    out = {}
    for kind in kinds:
        preset, extra = overrides[kind]
        out[kind] = (preset, apply_overrides(get_preset(preset), ["train.device=cpu", *extra()]))
    return out


def table(results: list[dict[str, Any]]) -> str:
    head = "| phase | " + " | ".join(f"{r['preset']} ({r['precision']})" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for p in PHASES:
        cells = [f"{100 * r['phases'][p] / r['step_s']:.1f}% ({r['phases'][p]:.2f} s)" for r in results]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines.append("| **step** | " + " | ".join(f"{r['step_s']:.2f} s ({r['batch']})" for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default="image,audio,text")
    p.add_argument("--steps", type=int, default=2, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=Path("runs/bench-data"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    t0 = time.perf_counter()
    results = []
    for kind, (preset, cfg) in configs(args.kinds.split(","), args.data_dir).items():
        r = profile(kind, cfg, args.steps, args.warmup)
        r["preset"] = preset
        r["batch"] = f"{cfg.train.batch_size} x {cfg.model.clone_batch} views"
        print(json.dumps(r), file=sys.stderr)  # partial results survive a crash of a later preset
        results.append(r)
    print(table(results))
    print(f"\n{torch.get_num_threads()} thread(s), cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"torch {torch.__version__}; median of {args.steps} steps after {args.warmup} warm-up; "
          f"{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
