"""Text benchmark on the fortunes corpus (2-core CPU budget, about 20-25 minutes).

1. Pretraining throughput (tokens/s) of the `data2vec2_text_fortunes` preset, fp32 and bf16.
2. Pretrain that preset with data2vec 2.0 for a fixed step budget.
3. Fine-tune on the fortunes category task (4 classes) from the pretrained encoder and from the
   same encoder with random weights, with identical fine-tuning settings; report test accuracy.
4. Linear probe (logistic regression) on frozen mean-pooled features of both encoders.

Every step runs a `data2vec` CLI command (printed, and stored in results.json) except the
throughput timing, which times `Trainer.train_step` directly.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text.py --out runs/bench-text

`--stages probe` (say) runs only that stage on an existing run folder and adds to its results.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import torch

from data2vec.cli import main as cli
from data2vec.config import apply_overrides
from data2vec.data.text_corpus import collate_tokens
from data2vec.data.text_fortunes import fortunes_classification
from data2vec.eval.probe import linear_probe
from data2vec.heads.classification import masked_mean
from data2vec.data.text_pretrain import text_tokenizer
from data2vec.presets import get_preset
from data2vec.heads.finetuned import HeadConfig
from data2vec.models import build_finetuned
from data2vec.train.finetune_run import load_backbone
from data2vec.train.finetune_text import encode_sentences
from data2vec.train.pretrain import Trainer

PRESET = "data2vec2_text_fortunes"


def run_cli(argv: list[str], log: list[str]) -> None:
    cmd = "data2vec " + " ".join(shlex.quote(a) for a in argv)
    print(f"\n$ {cmd}", flush=True)
    log.append(cmd)
    if cli(argv) != 0:
        raise SystemExit(f"command failed: {cmd}")


def throughput(out: Path, bf16: bool, steps: int, cache: str) -> dict[str, float]:
    """Tokens (non-padding, before the M masked copies) per second over `steps` timed steps."""
    cfg = apply_overrides(get_preset(PRESET), [f"train.bf16={bf16}", f"data.cache_dir={cache}"])
    trainer = Trainer(cfg, out / f"throughput-{'bf16' if bf16 else 'fp32'}", force=True)
    tokens = 0

    def counting(stream):
        nonlocal tokens
        for batch in stream:
            tokens += int((~batch["padding_mask"]).sum())
            yield batch

    batches = counting(trainer.batch_stream())
    trainer.train_step(batches)  # warm-up step, not timed
    tokens = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batches)
    seconds = time.perf_counter() - t0
    return {"bf16": bf16, "steps": steps, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


@torch.no_grad()
def probe(ckpt: str, init: str) -> dict[str, float]:
    """Test accuracy of a logistic regression on frozen, mean-pooled final-layer features."""
    pre, state = load_backbone(ckpt, "", "student" if init == "pretrained" else "random")
    model = build_finetuned(pre.model, HeadConfig("sequence_classification", 4), state).eval()
    tok = text_tokenizer(pre.data, pre.model.input)
    feats = {}
    for split, data in fortunes_classification().items():
        ids = encode_sentences(tok, data.texts, pre.model.input.max_positions)
        xs = []
        for i in range(0, len(ids), 64):
            b = collate_tokens(ids[i:i + 64], tok.pad)
            xs.append(masked_mean(model.features(b["tokens"], b["padding_mask"])[0], b["padding_mask"]))
        feats[split] = (torch.cat(xs), torch.tensor(data.labels))
    return {"init": init, "test_accuracy": linear_probe(*feats["train"], *feats["test"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-text")
    p.add_argument("--pretrain-steps", type=int, default=500)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--finetune-lr", type=float, default=2e-4)
    p.add_argument("--fp32-steps", type=int, default=20)
    p.add_argument("--bf16-steps", type=int, default=3)
    p.add_argument("--stages", default="throughput,pretrain,finetune,probe", help="comma-separated stages to run")
    args = p.parse_args()
    stages = set(args.stages.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = str(out / "cache")
    saved = out / "results.json"
    results: dict = json.loads(saved.read_text()) if saved.exists() else {}
    results.update(threads=torch.get_num_threads(), preset=PRESET)
    commands: list[str] = results.setdefault("commands", [])

    if "throughput" in stages:
        results["throughput"] = [throughput(out, False, args.fp32_steps, cache),
                                 throughput(out, True, args.bf16_steps, cache)]
        print(json.dumps(results["throughput"], indent=2), flush=True)
    if "pretrain" in stages:
        t0 = time.perf_counter()
        run_cli(["pretrain", "--preset", PRESET, "--out", str(out / "pretrain"), "--force", "--no-progress",
                 f"train.max_steps={args.pretrain_steps}", f"model.teacher.anneal_steps={args.pretrain_steps}",
                 f"data.cache_dir={cache}"], commands)
        results["pretrain_seconds"] = time.perf_counter() - t0
    ckpt = str(out / "pretrain" / "checkpoints" / "last.pt")
    for init in ("pretrained", "random"):
        if "finetune" in stages:
            weights = "student" if init == "pretrained" else "random"
            run_cli(["finetune-text", "--checkpoint", ckpt, "--fortunes", "--out", str(out / f"finetune-{init}"),
                     "--force", f"weights={weights}", f"train.lr={args.finetune_lr}",
                     f"train.epochs={args.finetune_epochs}", "train.batch_size=16", "train.weight_decay=0.1",
                     "train.clip_norm=0", "model.head_dropout=0", "data.max_len=512", "train.bf16=false"], commands)
            results[init] = json.loads((out / f"finetune-{init}" / "results.json").read_text())
        if "probe" in stages:
            results[f"probe_{init}"] = probe(ckpt, init)
            print(results[f"probe_{init}"], flush=True)
    saved.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| encoder | valid acc (best epoch) | test acc | test macro-F1 | linear probe test acc |")
    for init in ("pretrained", "random"):
        r, pr = results.get(init), results.get(f"probe_{init}", {})
        if r:
            print(f"| {init} | {r['valid']['accuracy']:.4f} (update {r['best_step']}) | {r['test']['accuracy']:.4f} | "
                  f"{r['test']['f1']:.4f} | {pr.get('test_accuracy', float('nan')):.4f} |")
    for t in results.get("throughput", []):
        print(f"{'bf16' if t['bf16'] else 'fp32'}: {t['tokens_per_s']:.0f} tokens/s ({t['steps']} steps)")


if __name__ == "__main__":
    main()
