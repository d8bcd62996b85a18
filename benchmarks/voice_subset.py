"""Subsets of a speech-corpus split chosen by voice: what do the voices of the audio do?

    # the unlabeled audio without its one American voice:
    .venv/bin/python benchmarks/voice_subset.py runs/speech6k train --drop en-us --out runs/speech6k-no-en-us
    # 300 labelled utterances, none of them American / half of them American:
    .venv/bin/python benchmarks/voice_subset.py runs/speech train --drop en-us --num 300 --out runs/speech-lab-no-us
    .venv/bin/python benchmarks/voice_subset.py runs/speech train --num 300 --take en-us=150 --out runs/speech-lab-us-half

Reads CORPUS/{split}.tsv and the voice of every file from CORPUS/speakers.tsv (both written by
`data2vec speech-corpus`) and writes OUT/{split}.tsv with the label files next to it (.ltr,
.wrd, whichever exist), the chosen lines in the split's own order. `--take VOICE=K` keeps the
first K utterances of VOICE and fills the rest of `--num` with the first of the other voices,
so a subset differs from the split's first N utterances only in its voices.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from data2vec.data.audio import read_manifest, write_manifest
from data2vec.data.audio_labeled import read_label_lines
from data2vec.data.speech_corpus import read_speakers


def choose(voices: list[str], drop: set[str], num: int, take: dict[str, int]) -> list[int]:
    """Indices (in order) of the utterances to keep, given each utterance's voice."""
    kept = [i for i, v in enumerate(voices) if v not in drop]
    chosen = []
    for voice, k in take.items():
        of_voice = [i for i in kept if voices[i] == voice]
        if len(of_voice) < k:
            raise SystemExit(f"--take {voice}={k}: the split holds {len(of_voice)} utterances of {voice}, fewer than {k}")
        chosen += of_voice[:k]
    rest = [i for i in kept if voices[i] not in take]
    want = (num or len(kept)) - len(chosen)
    if want < 0 or want > len(rest):
        raise SystemExit(f"--num {num}: cannot be filled ({len(chosen)} taken, {len(rest)} others available)")
    return sorted(chosen + rest[:want])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="folder written by `data2vec speech-corpus`")
    ap.add_argument("split", choices=("train", "valid", "test"))
    ap.add_argument("--out", required=True, help="folder for the subset's manifest and label files")
    ap.add_argument("--drop", action="append", default=[], help="leave out every utterance of this voice")
    ap.add_argument("--num", type=int, default=0, help="number of utterances to keep (0: all that are left)")
    ap.add_argument("--take", action="append", default=[], help="VOICE=K: K of the kept utterances from VOICE")
    a = ap.parse_args(argv)
    corpus, out = Path(a.corpus), Path(a.out)
    manifest = corpus / f"{a.split}.tsv"
    root, entries = read_manifest(manifest)
    voice_of = read_speakers(corpus, "voice")
    missing = [e.path for e in entries if e.path not in voice_of]
    if missing:
        raise SystemExit(f"{corpus / 'speakers.tsv'}: no voice for {len(missing)} files of {manifest}, e.g. {missing[0]}")
    voices = [voice_of[e.path] for e in entries]
    take = {v: int(k) for v, k in (t.split("=", 1) for t in a.take)}
    keep = choose(voices, set(a.drop), a.num, take)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out / f"{a.split}.tsv", root, [entries[i] for i in keep])
    for ext in ("ltr", "wrd"):
        if manifest.with_suffix(f".{ext}").is_file():
            lines = read_label_lines(manifest, ext, len(entries))
            (out / f"{a.split}.{ext}").write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
    counts = Counter(voices[i] for i in keep)
    print(f"{out / (a.split + '.tsv')}: {len(keep)} utterances; " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
