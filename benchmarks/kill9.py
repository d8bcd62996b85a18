"""kill -9 trials: SIGKILL a tiny run at random moments (some while a checkpoint is being
written), resume it with --resume until it finishes, and check that its final checkpoint is
bit-identical to an uninterrupted run's (student, teacher, optimizer state, run position).

    OMP_NUM_THREADS=1 python benchmarks/kill9.py --kind pretrain --trials 20 --out runs/kill9

Each trial kills its run 1 to `--max-kills` times. A kill is "random" (a uniform moment of an
uninterrupted run's duration) or "write" (the moment a checkpoint's temporary file appears);
the table counts how many kills found a checkpoint write in progress.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Tiny runs that checkpoint often, so kills land between, before and inside checkpoint writes.
RUNS = {
    "pretrain": dict(
        verb=["pretrain", "--no-progress"],
        fresh=["--preset", "data2vec2_image_tiny"],
        overrides=["train.max_steps=16", "train.ckpt_every=2", "train.log_every=2", "data.limit=256",
                   "train.device=cpu", "train.num_workers=0"],
        last="checkpoints/last.pt",
    ),
    # Fine-tuning from random weights: --resume repeats the recipe and overrides (checked against the run's).
    "finetune": dict(
        verb=["finetune", "--no-progress"],
        fresh=["--recipe", "image_tiny"],
        overrides=["train.max_steps=16", "train.ckpt_every=2", "train.eval_every=4", "train.log_every=2",
                   "data.label_frac=0.003", "data.valid_size=64", "data.test=", "train.device=cpu"],
        last="checkpoints/last.pt",
        resume_repeats_args=True,
    ),
}


def command(kind: str, out: Path, resume: bool) -> list[str]:
    run = RUNS[kind]
    cmd = [sys.executable, "-m", "data2vec", *run["verb"], "--out", str(out)]
    if not resume:
        return cmd + [*run["fresh"], "--force", *run["overrides"]]
    return cmd + ["--resume"] + ([*run["fresh"], *run["overrides"]] if run.get("resume_repeats_args") else [])


def can_resume(kind: str, out: Path) -> bool:
    last = out / RUNS[kind]["last"]
    return last.exists() or last.with_name(f"{last.stem}.prev{last.suffix}").exists()


def temporaries(kind: str, out: Path) -> set[str]:
    """Names of checkpoint temporaries in the run's checkpoint folder."""
    folder = (out / RUNS[kind]["last"]).parent
    try:
        return {p.name for p in folder.iterdir() if p.suffix == ".tmp"}
    except FileNotFoundError:
        return set()


def start(kind: str, out: Path, log) -> subprocess.Popen:
    resume = can_resume(kind, out)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(command(kind, out, resume), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def kill_at(proc: subprocess.Popen, kind: str, out: Path, mode: str, delay: float) -> dict:
    """SIGKILL `proc` after `delay` seconds ("random") or when a checkpoint write starts ("write").

    A write is in progress while a temporary exists that the previous (killed) process did not leave.
    """
    t0, stale = time.monotonic(), temporaries(kind, out)
    while proc.poll() is None:
        if mode == "random" and time.monotonic() - t0 >= delay:
            break
        if mode == "write" and temporaries(kind, out) - stale:
            break
        time.sleep(0.0005 if mode == "write" else 0.01)
    if proc.poll() is not None:
        return {"mode": mode, "killed": False}
    during_write = bool(temporaries(kind, out) - stale)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"mode": mode, "killed": True, "during_write": during_write, "after_s": round(time.monotonic() - t0, 3)}


def run_to_end(kind: str, out: Path, log) -> None:
    proc = start(kind, out, log)
    if proc.wait() != 0:
        raise RuntimeError(f"{out}: the run failed (see {log.name})")


def final_state(kind: str, out: Path) -> dict:
    return torch.load(out / RUNS[kind]["last"], map_location="cpu", weights_only=True)


def tensors(obj, prefix: str = ""):
    """(name, tensor) for every tensor in a nested checkpoint dict/list."""
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors(v, f"{prefix}.{i}")


def identical(a: dict, b: dict) -> tuple[bool, str]:
    """Bit-exact comparison of weights, teacher, optimizer state and run position."""
    for key in [k for k in ("model", "teacher", "optimizer") if k in b]:
        ta, tb = dict(tensors(a[key])), dict(tensors(b[key]))
        if ta.keys() != tb.keys():
            return False, f"{key}: different entries"
        for name in ta:
            if ta[name].dtype != tb[name].dtype or not torch.equal(ta[name], tb[name]):
                return False, f"{key}{name} differs"
    if a["state"]["step"] != b["state"]["step"]:
        return False, f"step {a['state']['step']} != {b['state']['step']}"
    return True, ""


def write_summary(root: Path, kind: str, trials: list[dict], ref_seconds: float, seconds: float) -> dict:
    """Counts over the trials so far, written to ROOT/kill9.json."""
    killed = [k for t in trials for k in t["kills"] if k["killed"]]
    summary = {
        "kind": kind, "trials": len(trials), "bit_exact": sum(t["bit_exact"] for t in trials),
        "kills": len(killed), "kills_during_write": sum(k["during_write"] for k in killed),
        "reference_seconds": round(ref_seconds, 1), "seconds": round(seconds, 1),
        "command": " ".join(command(kind, Path("RUN"), False)[1:]), "trial_details": trials,
    }
    (root / "kill9.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(RUNS), default="pretrain")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--max-kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/kill9")
    args = ap.parse_args()
    root = Path(args.out) / args.kind
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "reference.log", "w") as log:
        t0 = time.monotonic()
        run_to_end(args.kind, root / "reference", log)
        ref_seconds = time.monotonic() - t0
    reference = final_state(args.kind, root / "reference")
    rng = random.Random(args.seed)
    trials = []
    t_all = time.monotonic()
    for i in range(args.trials):
        out = root / f"trial{i:02d}"
        kills = []
        with open(root / f"trial{i:02d}.log", "w") as log:
            for _ in range(rng.randint(1, args.max_kills)):
                mode = rng.choice(["random", "write"])
                delay = rng.uniform(0.2, 1.0) * ref_seconds
                kills.append(kill_at(start(args.kind, out, log), args.kind, out, mode, delay))
            run_to_end(args.kind, out, log)
        same, why = identical(final_state(args.kind, out), reference)
        trials.append({"trial": i, "kills": kills, "bit_exact": same, "difference": why})
        done = [k for k in kills if k["killed"]]
        print(f"trial {i:2d}: {len(done)} kill(s), {sum(k['during_write'] for k in done)} during a write: "
              f"{'bit-exact' if same else 'DIFFERS: ' + why}", flush=True)
        write_summary(root, args.kind, trials, ref_seconds, time.monotonic() - t_all)  # kept if stopped early
    summary = write_summary(root, args.kind, trials, ref_seconds, time.monotonic() - t_all)
    print(f"| {args.kind} | {summary['bit_exact']}/{summary['trials']} | {summary['kills']} | "
          f"{summary['kills_during_write']} | {summary['seconds']:.0f} s |")
    return 0 if summary["bit_exact"] == summary["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
