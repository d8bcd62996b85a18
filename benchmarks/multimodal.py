"""Joint multimodal pretraining against single-modality pretraining at an equal total budget.

`data2vec2_multi_small` (one shared Transformer; images, speech, text) trained jointly for 3N
updates that alternate image, audio, text (N updates of each modality's own parts, 3N of the
shared Transformer), against the same architecture trained on one modality alone for N updates
(`pretrain --modality NAME`), and against its random initialisation. Every model is then
probed the same way per modality with `data2vec probe` (linear probe on frozen mean(+CLS)
features of the last block, student weights):

- image: Fashion-MNIST, first `--image-train` training images, the 10,000 test images;
- audio: the kind of utterance (digits, word, sentence) of the speech corpus (`data2vec
  speech-corpus`), train split against the test split, whose speakers are held out;
- text: the fortunes 4-category quote task (`data.text_fortunes.fortunes_classification`).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/multimodal.py --steps 30 --image-train 5000 --out runs/bench-multimodal

Every step is a `data2vec` CLI command (printed, and stored in results.json). `--stages probe`
(say) reruns only the probes on existing runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shlex
import time
from pathlib import Path

from data2vec.cli import main as cli
from data2vec.data.audio import read_manifest
from data2vec.data.speech_corpus import read_speakers
from data2vec.data.text_fortunes import fortunes_classification

PRESET = "data2vec2_multi_small"
MODALITIES = ("image", "audio", "text")
FMNIST = "/usr/share/datasets/fashion-mnist"


def run_cli(argv: list[str], log: list[str]) -> str:
    """Run one `data2vec` command in this process; returns what it printed."""
    cmd = "data2vec " + " ".join(shlex.quote(a) for a in argv)
    print(f"\n$ {cmd}", flush=True)
    log.append(cmd)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(argv)
    print(out.getvalue()[-400:], flush=True)
    if code != 0:
        raise SystemExit(f"command failed: {cmd}")
    return out.getvalue()


def audio_probe_data(speech: Path, out: Path) -> Path:
    """train/test manifests of the speech corpus with `.kind` label files beside them."""
    out.mkdir(parents=True, exist_ok=True)
    kind = read_speakers(speech, "kind")
    for split in ("train", "test"):
        text = (speech / f"{split}.tsv").read_text()
        (out / f"{split}.tsv").write_text(text)
        _, entries = read_manifest(speech / f"{split}.tsv")
        (out / f"{split}.kind").write_text("".join(kind[Path(e.path).name] + "\n" for e in entries))
    return out


def text_probe_data(out: Path) -> Path:
    """The fortunes category task as train/test TSV files (sentence, label)."""
    out.mkdir(parents=True, exist_ok=True)
    for split, data in fortunes_classification().items():
        with open(out / f"{split}.tsv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
            w.writerow(["sentence", "label"])
            for text, label in zip(data.texts, data.labels):
                w.writerow([" ".join(text[0].split()), data.label_names[label]])
    return out


def probe_args(modality: str, data: dict[str, Path], image_train: int) -> list[str]:
    if modality == "image":
        return ["--train", f"{FMNIST}/train-images-idx3-ubyte.gz", "--test", f"{FMNIST}/t10k-images-idx3-ubyte.gz",
                "--train-limit", str(image_train)]
    if modality == "audio":
        return ["--train", str(data["audio"] / "train.tsv"), "--test", str(data["audio"] / "test.tsv"),
                "--labels", "kind"]
    return ["--train", str(data["text"] / "train.tsv"), "--test", str(data["text"] / "test.tsv")]


def probe(ckpt: Path, modality: str, data: dict[str, Path], image_train: int, log: list[str]) -> float:
    printed = run_cli(["probe", str(ckpt), "--modality", modality, "--knn-k", "0",
                       *probe_args(modality, data, image_train)], log)
    return json.loads(printed[: printed.rindex("}") + 1])["linear_top1"]


def pretrain(out: Path, steps: int, modality: str, decays: str, log: list[str]) -> float:
    t0 = time.perf_counter()
    start, end = decays.split(",")
    argv = ["pretrain", "--preset", PRESET, "--out", str(out), "--force", "--no-progress",
            f"train.max_steps={steps}", f"model.teacher.anneal_steps={max(steps, 1)}",
            f"model.teacher.decay={start}", f"model.teacher.end_decay={end}",
            f"train.warmup_steps={steps // 10}", f"train.ckpt_every={max(steps, 1)}"]
    run_cli(argv + (["--modality", modality] if modality != "joint" else []), log)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench-multimodal")
    p.add_argument("--steps", type=int, default=30, help="N: updates per modality (the joint run makes 3N)")
    p.add_argument("--speech", default="runs/speech", help="the speech corpus folder (data2vec speech-corpus)")
    p.add_argument("--image-train", type=int, default=5000)
    p.add_argument("--decays", default="0.8,0.9", help="EMA decay start,end (annealed over each run); the "
                   "default leaves about 1%% of the teacher's random init after N updates")
    p.add_argument("--stages", default="pretrain,probe")
    args = p.parse_args()
    out, stages = Path(args.out), set(args.stages.split(","))
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    results.update(preset=PRESET, steps_per_modality=args.steps)
    commands: list[str] = results.setdefault("commands", [])
    runs = {"random": (0, "joint"), "joint": (3 * args.steps, "joint"), **{m: (args.steps, m) for m in MODALITIES}}
    if "pretrain" in stages:
        seconds = results.setdefault("pretrain_seconds", {})
        for name, (steps, modality) in runs.items():
            seconds[name] = pretrain(out / name, steps, modality, args.decays, commands)
            saved.write_text(json.dumps(results, indent=2) + "\n")
    if "probe" in stages:
        data = {"audio": audio_probe_data(Path(args.speech), out / "probe-audio"),
                "text": text_probe_data(out / "probe-text")}
        table = results.setdefault("linear_top1", {})
        for m in MODALITIES:
            for name in ("random", m, "joint"):
                row = "single" if name == m else name
                table.setdefault(m, {})[row] = probe(out / name / "export", m, data, args.image_train, commands)
                saved.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| modality | random init | single (N updates) | joint (3N alternating) | joint - single |")
    for m, row in results.get("linear_top1", {}).items():
        diff = row.get("joint", float("nan")) - row.get("single", float("nan"))
        print(f"| {m} | {100 * row.get('random', float('nan')):.2f}% | {100 * row.get('single', float('nan')):.2f}% | "
              f"{100 * row.get('joint', float('nan')):.2f}% | {100 * diff:+.2f} |")


if __name__ == "__main__":
    main()
