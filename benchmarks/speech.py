"""Speech benchmark on the espeak-ng corpus: data2vec 2.0 pretraining vs random init for CTC.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speech.py [--pretrain-min 9] [--ft-steps 300]

1. synthesizes `runs/speech` if missing (`data2vec speech-corpus --out runs/speech --num 1500`);
2. measures pretraining throughput (seconds of audio per second) in fp32 and bf16 autocast;
3. pretrains `data2vec2_audio_small` on train.tsv for a wall-clock budget;
4. fine-tunes with CTC on the first N labeled training utterances, from the pretrained
   encoder and from random weights (the two runs in parallel, one thread each), and reports
   WER/CER on test.tsv, whose voices and variants never occur in training;
5. writes the table, with the exact commands, to docs/benchmarks-speech.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sh(cmd: list[str]) -> str:
    """Run a data2vec command, echoing it; returns stdout."""
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True, text=True).stdout


def throughput(bf16: bool, steps: int, corpus: Path) -> float:
    """Seconds of (real, unpadded) audio per wall-clock second over `steps` pretraining steps
    of data2vec2_audio_small, after one warm-up step."""
    from data2vec.config import apply_overrides
    from data2vec.presets import get_preset
    from data2vec.train.pretrain import Trainer

    cfg = apply_overrides(get_preset("data2vec2_audio_small"),
                          [f"data.path={corpus / 'train.tsv'}", f"train.bf16={bf16}", "train.log_every=1000"])
    trainer = Trainer(cfg, ROOT / "runs" / "bench-speech" / f"throughput-{'bf16' if bf16 else 'fp32'}", force=True)
    batches = list(itertools.islice(trainer.data.batches(0, 0), steps + 1))
    trainer.train_step(iter(batches[:1]))  # warm-up
    audio_s = sum(float((~b["padding_mask"]).sum()) / 16000 for b in batches[1:])
    t0 = time.perf_counter()
    for b in batches[1:]:
        trainer.train_step(iter([b]))
    return audio_s / (time.perf_counter() - t0)


def finetune_cmd(out: Path, corpus: Path, init: str | None, args: argparse.Namespace) -> list[str]:
    cmd = [PY, "-m", "data2vec", "finetune", "--recipe", "ctc_small", "--train", str(corpus / "train.tsv"),
           "--valid", str(corpus / "test.tsv"), "--out", str(out), "--force", "--no-progress"]
    cmd += ["--init", init] if init else []
    return cmd + [f"data.train_limit={args.labeled}", f"train.max_steps={args.ft_steps}",
                  f"train.eval_every={args.ft_steps}", f"train.freeze_backbone_steps={args.ft_steps // 10}",
                  "data.max_samples_per_batch=384000", "train.batch_size=8"]


def commands(args: argparse.Namespace) -> tuple[list[str], dict[str, list[str]]]:
    """The pretraining command and the two fine-tuning commands (pretrained, random init)."""
    out = ROOT / "runs" / "bench-speech"
    pre_cmd = [PY, "-m", "data2vec", "pretrain", "--preset", "data2vec2_audio_small", "--out", str(out / "pretrain"),
               "--force", "--no-progress", f"data.path={args.corpus / 'train.tsv'}", "train.max_steps=100000",
               f"train.time_limit_min={args.pretrain_min}", "train.ckpt_every=100000"]
    ckpt = str(out / "pretrain" / "checkpoints" / "last.pt")
    return pre_cmd, {"data2vec 2.0": finetune_cmd(out / "ft-pretrained", args.corpus, ckpt, args),
                     "random init": finetune_cmd(out / "ft-random", args.corpus, None, args)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "runs" / "speech")
    p.add_argument("--pretrain-min", type=float, default=10.0)
    p.add_argument("--ft-steps", type=int, default=600)
    p.add_argument("--labeled", type=int, default=300)
    p.add_argument("--tp-steps", type=int, default=4)
    p.add_argument("--doc-only", action="store_true", help="rewrite the doc from runs/bench-speech/results.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    saved = ROOT / "runs" / "bench-speech" / "results.json"
    pre_cmd, cmds = commands(args)
    if args.doc_only:
        r = json.loads(saved.read_text())
        write_doc(args, r["throughput"], r["pretrain"], pre_cmd, cmds, r["finetune"], r["minutes"])
        return 0
    if not (args.corpus / "train.tsv").exists():
        sh([PY, "-m", "data2vec", "speech-corpus", "--out", str(args.corpus), "--num", "1500", "--seed", "0"])
    t_start = time.perf_counter()
    tp = {"fp32": throughput(False, args.tp_steps, args.corpus), "bf16": throughput(True, args.tp_steps, args.corpus)}
    print("throughput (audio s / s):", tp, flush=True)
    pre = _final_json(sh(pre_cmd))
    for c in cmds.values():
        print("+", " ".join(c), flush=True)
    procs = {k: subprocess.Popen(c, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for k, c in cmds.items()}
    results = {k: _final_json(p.communicate()[0]) for k, p in procs.items()}
    total_min = (time.perf_counter() - t_start) / 60
    summary = {"throughput": tp, "pretrain": pre, "finetune": results, "minutes": total_min}
    saved.write_text(json.dumps(summary, indent=2))
    write_doc(args, tp, pre, pre_cmd, cmds, results, total_min)
    print(json.dumps(summary, indent=2))
    return 0


def _final_json(stdout: str) -> dict:
    """The JSON summary a verb prints after its resolved config."""
    return json.loads(stdout[stdout.rindex("\n{") + 1:])


def _rel(cmd: list[str]) -> str:
    return "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(c.replace(str(ROOT) + "/", "") for c in cmd[1:])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_doc(args, tp, pre, pre_cmd, cmds, results, total_min) -> None:
    from data2vec.data.audio import read_manifest
    from data2vec.presets import get_preset

    min_len = get_preset("data2vec2_audio_small").data.min_sample_size
    n_pre = sum(e.num_samples >= min_len for e in read_manifest(args.corpus / "train.tsv")[1])
    rows = "\n".join(
        f"| {name} | {r['final']['valid_cer']:.1f} | {r['final']['valid_wer']:.1f} | {r['train_utterances']} "
        f"({r['train_seconds'] / 60:.1f} min) | {args.ft_steps} | {r['seconds'] / 60:.1f} |"
        for name, r in results.items()
    )
    doc = f"""## Speech (synthesized espeak-ng corpus)

Machine: {cpu_name()}, 1 thread per process (`OMP_NUM_THREADS=1`; two fine-tuning runs in parallel),
on cores shared with other jobs, so minutes are approximate. PyTorch {torch.__version__}. One run, one seed.
Whole benchmark: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speech.py --pretrain-min {args.pretrain_min} --ft-steps {args.ft_steps} --labeled {args.labeled}` ({total_min:.1f} min).
Corpus: `data2vec speech-corpus --out runs/speech --num 1500 --seed 0` (1200 train / 150 valid / 150 test utterances;
test voices and variants never occur in training).

**CTC fine-tuning, held-out voices (test.tsv), greedy decoding, no language model.** Same
architecture (`data2vec2_audio_small`: 128-channel conv features, 4 blocks of width 128),
same recipe (`ctc_small`, frozen conv features, first {args.ft_steps // 10} updates head only), first
{args.labeled} labeled training utterances. Pretraining: {pre['steps']} updates of data2vec 2.0 in
{pre['seconds'] / 60:.1f} min on the {n_pre} training utterances of at least {min_len / 16000:.1f} s (no labels used).

| encoder | CER % | WER % | labeled utterances | updates | fine-tune min |
|---|---|---|---|---|---|
{rows}

The random-init row also keeps its (random) conv feature extractor frozen, as the recipe does for
every run (fairseq `feature_grad_mult: 0`). With this CPU budget both models are far from
usable transcripts (WER above 90%); the comparison is what the table is for. Fine-tune minutes
include the final evaluation on the 150 test utterances.

Commands:

    {_rel(pre_cmd)}
    {_rel(cmds['data2vec 2.0'])}
    {_rel(cmds['random init'])}

**Pretraining throughput** (`data2vec2_audio_small`, batches of up to 16 utterances / 3 s crops,
M={get_preset("data2vec2_audio_small").model.clone_batch} masked views per utterance; seconds of real audio per second, {args.tp_steps} steps after a warm-up step; from
`throughput()` in the same script):

| precision | audio s / s |
|---|---|
| fp32 | {tp['fp32']:.2f} |
| bf16 autocast | {tp['bf16']:.2f} |

This CPU has AVX2 but no AVX-512/BF16 instructions, so bf16 autocast is several times slower
than fp32 here, and `train.bf16=auto` (every preset's default) trains in fp32 on such CPUs and
in bf16 on GPUs and on CPUs with AVX-512 BF16 or AMX.
"""
    (ROOT / "docs" / "benchmarks-speech.md").write_text(doc)


if __name__ == "__main__":
    raise SystemExit(main())
