"""Spoken-word classification from the espeak-ng speech corpus: its single-word utterances.

    .venv/bin/python benchmarks/speech_words.py runs/speech

Reads CORPUS/speakers.tsv (the `kind` of every utterance) and CORPUS/{train,valid,test}.tsv and
.wrd, and writes CORPUS/kw/{split}.tsv (the manifest rows of the `word` utterances) with their
labels in CORPUS/kw/{split}.word, for `data2vec finetune --recipe audio_cls_small data.labels=word`.
The corpus holds validation and test voices never heard in training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data2vec.data.speech_corpus import read_speakers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="folder written by `data2vec speech-corpus`")
    a = ap.parse_args()
    corpus = Path(a.corpus)
    kinds = read_speakers(corpus, "kind")
    out = corpus / "kw"
    out.mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        root, *rows = (corpus / f"{split}.tsv").read_text().splitlines()
        words = (corpus / f"{split}.wrd").read_text().splitlines()
        if len(rows) != len(words):
            raise ValueError(f"{corpus / split}.tsv has {len(rows)} rows but {split}.wrd has {len(words)} lines")
        keep = [(row, word) for row, word in zip(rows, words) if kinds.get(row.split("\t")[0]) == "word"]
        (out / f"{split}.tsv").write_text(root + "\n" + "".join(row + "\n" for row, _ in keep))
        (out / f"{split}.word").write_text("".join(word + "\n" for _, word in keep))
        print(f"{split}: {len(keep)} single-word utterances, {len({w for _, w in keep})} words")


if __name__ == "__main__":
    main()
