"""CER of CTC fine-tuned checkpoints per voice variant (or utterance kind) of the espeak-ng speech corpus.

    .venv/bin/python benchmarks/ctc_by_speaker.py runs/speech test \
        pretrained='runs/ctc-sp6k162-student-[123]/finetuned.pt' random='runs/ctc-L1600m5-random-[123]/finetuned.pt'

Transcribes the split with `data2vec transcribe` (greedy decoding), counts character edits
against CORPUS/{split}.ltr per group (`--by`: a column of CORPUS/speakers.tsv, the voice variant
unless told; `--by kind` splits sentences, single words and digit strings) and prints, per group,
each arm's CER (fine-tuning's own `error_rates`) averaged over its checkpoints and the ratio of
the first arm to the last. It tells whether a voice costs a model everywhere or on a few odd
variants, or whether one kind of utterance carries the cost.
`transcribe` reads one file at a time and fine-tuning's evaluation padded batches, so the totals
can differ from fine-tuning's by a few tenths.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from data2vec.data.audio import read_manifest
from data2vec.data.audio_labeled import read_transcripts
from data2vec.data.speech_corpus import read_speakers
from data2vec.heads.ctc import error_rates


def transcribe(checkpoint: str, paths: list[str]) -> list[str]:
    """Hypotheses for `paths` from one CTC checkpoint, in their order (the CLI prints PATH<TAB>TEXT)."""
    out = subprocess.run([sys.executable, "-m", "data2vec", "transcribe", "--checkpoint", checkpoint, *paths],
                         capture_output=True, text=True, check=True).stdout
    hyps = [line.split("\t", 1)[1].strip() for line in out.splitlines() if "\t" in line]
    if len(hyps) != len(paths):
        raise SystemExit(f"{checkpoint}: {len(hyps)} transcripts for {len(paths)} files")
    return hyps


def cer_by_group(hyps: dict[str, str], refs: dict[str, str], group: dict[str, str]) -> dict[str, float]:
    """CER % per group and over all ("all")."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in refs:
        for key in (group[name], "all"):
            groups[key].append(name)
    return {k: error_rates([hyps[n] for n in names], [refs[n] for n in names])["cer"]
            for k, names in groups.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="folder written by `data2vec speech-corpus`")
    ap.add_argument("split", choices=("valid", "test"))
    ap.add_argument("arms", nargs="+", help="NAME=GLOB of finetuned.pt files")
    ap.add_argument("--by", default="variant", help="column of speakers.tsv to group by (variant, kind, voice, ...)")
    a = ap.parse_args()
    corpus = Path(a.corpus)
    root, entries = read_manifest(corpus / f"{a.split}.tsv")
    names = [e.path for e in entries]
    _, words = read_transcripts(corpus / f"{a.split}.tsv", "ltr", len(names))
    refs = dict(zip(names, words))
    group = read_speakers(corpus, a.by)
    paths = [str(root / n) for n in names]
    table: dict[str, dict[str, float]] = {}
    for arm in a.arms:
        name, pattern = arm.split("=", 1)
        checkpoints = sorted(glob.glob(pattern))
        if not checkpoints:
            raise SystemExit(f"arm {name}: no file matches {pattern}")
        runs = [cer_by_group(dict(zip(names, transcribe(c, paths))), refs, group) for c in checkpoints]
        table[name] = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    arms = list(table)
    print(f"| {a.by} | " + " | ".join(f"{n} CER %" for n in arms) + f" | {arms[0]} / {arms[-1]} |")
    print("|---" * (len(arms) + 2) + "|")
    for key in ["all"] + sorted(k for k in table[arms[0]] if k != "all"):
        cells = " | ".join(f"{table[n][key]:.1f}" for n in arms)
        print(f"| {key} | {cells} | {table[arms[0]][key] / table[arms[-1]][key]:.2f} |")


if __name__ == "__main__":
    main()
