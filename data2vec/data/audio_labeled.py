"""Labeled speech: a fairseq tsv manifest plus a line-aligned label file next to it.

`train.tsv` + `train.ltr` (letters, `|` between words), `train.wrd` (words; letters are derived
from it when no `.ltr` exists) or any `train.<ext>` with one class label per line.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader

from data2vec.data.audio import AudioDataset, LengthBucketSampler, collate_audio, read_manifest
from data2vec.heads.ctc import letters_from_words, words_from_letters

log = logging.getLogger("data2vec")


@dataclass
class LabeledAudio:
    """Utterances with one label each. `labels[i]` is a letter-token list (CTC) or a class
    name; `texts[i]` the reference words (CTC only)."""

    dataset: AudioDataset
    labels: list[Any]
    texts: list[str]
    num_dropped: int = 0

    def __len__(self) -> int:
        return len(self.dataset)


def _label_file(manifest: Path, ext: str) -> Path:
    path = manifest.with_suffix(f".{ext}")
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} for manifest {manifest} does not exist")
    return path


def read_label_lines(manifest: Path, ext: str, expected: int) -> list[str]:
    path = _label_file(manifest, ext)
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != expected:
        raise ValueError(f"{path}: {len(lines)} lines but the manifest {manifest} lists {expected} utterances")
    return lines


def read_transcripts(manifest: Path, labels: str, expected: int) -> tuple[list[list[str]], list[str]]:
    """Letter tokens and reference words per utterance from `.ltr` (or `.wrd`)."""
    if labels == "ltr" and not manifest.with_suffix(".ltr").is_file() and manifest.with_suffix(".wrd").is_file():
        labels = "wrd"
    lines = read_label_lines(manifest, labels, expected)
    if labels == "ltr":
        tokens = [line.split() for line in lines]
        return tokens, [words_from_letters(t) for t in tokens]
    if labels == "wrd":
        words = [" ".join(line.upper().split()) for line in lines]
        return [letters_from_words(w) for w in words], words
    raise ValueError(f"CTC labels must be 'ltr' or 'wrd', got {labels!r}")


def open_labeled(manifest: str | Path, labels: str, ctc: bool, min_samples: int, limit: int = 0,
                 speeds: tuple[float, ...] = (), seed: int = 0) -> LabeledAudio:
    """Read `manifest` and its labels; keep the first `limit` (0: all) of the utterances with at
    least `min_samples` samples (shorter ones give no frames and are dropped, with a count).
    `speeds`: play each utterance at one of these speeds, drawn per (seed, epoch, utterance)."""
    manifest = Path(manifest)
    if manifest.suffix != ".tsv" or not manifest.is_file():
        raise FileNotFoundError(f"labeled data must be a fairseq .tsv manifest; {manifest} is not one")
    root, entries = read_manifest(manifest)
    if ctc:
        tokens, texts = read_transcripts(manifest, labels, len(entries))
    else:
        tokens, texts = [line.strip() for line in read_label_lines(manifest, labels, len(entries))], [""] * len(entries)
    min_samples = math.ceil(min_samples * max(speeds, default=1.0))  # still one frame when played faster
    keep = [i for i, e in enumerate(entries) if e.num_samples >= min_samples and (not ctc or tokens[i])]
    dropped = len(entries) - len(keep)
    if dropped:
        log.warning("%s: dropped %d utterances shorter than %d samples or without a label", manifest, dropped, min_samples)
    keep = keep[:limit] if limit > 0 else keep
    if not keep:
        raise ValueError(f"{manifest}: no usable labeled utterance")
    ds = AudioDataset([entries[i].path for i in keep], [entries[i].num_samples for i in keep], root=root,
                      normalize=True, speeds=speeds, seed=seed)
    return LabeledAudio(ds, [tokens[i] for i in keep], [texts[i] for i in keep], dropped)


def batch_plan(data: LabeledAudio, max_samples: int, max_batch: int, seed: int, epoch: Optional[int]) -> list:
    """Length-bucketed index batches; shuffled per epoch, or in length order when `epoch` is None."""
    sampler = LengthBucketSampler(data.dataset.sizes, max_samples, shuffle=epoch is not None, seed=seed,
                                  max_batch_size=max_batch)
    return sampler.batches(epoch or 0)


def labeled_batches(data: LabeledAudio, max_samples: int, max_batch: int, seed: int,
                    epoch: Optional[int], start: int = 0) -> Iterator[dict[str, Any]]:
    """Batches of `batch_plan` from index `start`, with "label_index" (B,) into `data.labels`.
    All-unreadable batches are skipped."""
    plan = batch_plan(data, max_samples, max_batch, seed, epoch)[start:]
    data.dataset.set_epoch(epoch or 0)  # the speed drawn for an utterance changes with the epoch
    # Its own generator keeps the global RNG (seeded per update by the fine-tuning loop) untouched.
    for batch in DataLoader(data.dataset, batch_sampler=plan, collate_fn=collate_audio, generator=torch.Generator()):
        if batch["audio"].shape[0] == 0:
            continue
        batch["label_index"] = batch.pop("index")
        yield batch


def class_index(labels: list[str], names: Optional[tuple[str, ...]] = None) -> tuple[tuple[str, ...], torch.Tensor]:
    """Sorted class names (or the given ones) and the (N,) class id of every label."""
    names = names or tuple(sorted(set(labels)))
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(lookup))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among the training classes {list(names)[:10]}")
    return names, torch.tensor([lookup[lbl] for lbl in labels])
