"""Inputs for embeddings and probes, per modality: every item is named (the index file maps
rows to names), may carry a label, and is None when it cannot be read (skipped and counted).
Each modality registers its reader (`ModalitySpec.inputs`: reader(path, cfg, InputOptions)).

- images: a folder (any nesting; first-level sub-folders are classes) or an idx file (labels
  from the idx labels file beside it);
- audio: a folder of audio files or a fairseq manifest (.tsv); labels from the label file
  beside the manifest (`train.tsv` + `train.<ext>`, one label per line);
- text: a .txt file (one text per line) or a TSV/CSV/JSONL file (text and label columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils.data import Dataset

from data2vec.config import PretrainConfig
from data2vec.data.audio import AudioLoadError, find_audio_files, load_audio, normalize_waveform, read_manifest
from data2vec.data.audio_labeled import read_label_lines
from data2vec.data.image import IdxImages, TransformedImages, collate_images, eval_transform, open_images
from data2vec.data.text_corpus import collate_tokens
from data2vec.data.text_labeled import read_labeled
from data2vec.data.tokenizer import TextTokenizer

TEXT_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json")


@dataclass(frozen=True)
class InputOptions:
    """How inputs are read: `limit` (the first N; 0: all) for every modality; the text reader's
    tokenizer and columns; the audio reader's label file extension."""

    tokenizer: Optional[TextTokenizer] = None
    text_column: str | int = "sentence"
    label_column: Optional[str | int] = None
    label_ext: Optional[str] = None
    header: bool = True
    limit: int = 0


@dataclass
class Inputs:
    """A dataset of items ({input_key: tensor, "label": ...} or None), their names, and the
    collate function that batches them (adding a padding mask where lengths differ)."""

    dataset: Dataset
    names: list[str]
    collate: Callable[[list[Any]], dict[str, Any]]
    labels: Optional[list[Any]] = None  # per item, when the source has labels
    # Batch only inputs of equal length: data2vec speech's positional conv stack sees padded
    # frames (as fairseq's), so padding would change an utterance's features.
    same_length: bool = False


class _Audio(Dataset):
    def __init__(self, files: list[Path], normalize: bool) -> None:
        self.files, self.normalize = files, normalize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Optional[dict[str, Any]]:
        try:
            wav = load_audio(self.files[i])
        except AudioLoadError:
            return None
        if wav.size == 0:
            return None
        return {"audio": torch.from_numpy(normalize_waveform(wav) if self.normalize else wav)}


class _Tokens(Dataset):
    def __init__(self, ids: list[list[int]]) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"tokens": self.ids[i]}


def collate_audio(items: list[Optional[dict[str, Any]]]) -> dict[str, Any]:
    """Right-pad waveforms: "audio" (B, T) and "padding_mask" (B, T), True = padding."""
    good = [it for it in items if it is not None]
    out: dict[str, Any] = {"num_skipped": len(items) - len(good)}
    if good:
        longest = max(len(it["audio"]) for it in good)
        out["audio"] = torch.zeros(len(good), longest)
        out["padding_mask"] = torch.ones(len(good), longest, dtype=torch.bool)
        for i, it in enumerate(good):
            out["audio"][i, : len(it["audio"])] = it["audio"]
            out["padding_mask"][i, : len(it["audio"])] = False
    return out


def _collate_text(pad_id: int) -> Callable[[list[Any]], dict[str, Any]]:
    def collate(items: list[Optional[dict[str, Any]]]) -> dict[str, Any]:
        good = [it for it in items if it is not None]
        return {"num_skipped": len(items) - len(good), **(collate_tokens([it["tokens"] for it in good], pad_id)
                                                           if good else {})}

    return collate


def image_inputs(path: str | Path, cfg: PretrainConfig, options: InputOptions = InputOptions()) -> Inputs:
    inp = cfg.model.input
    images = open_images(path, inp.in_chans, options.limit)
    mean, std = cfg.data.mean, cfg.data.std
    names = ([f"{path}:{i}" for i in range(len(images))] if isinstance(images, IdxImages)
             else [str(f) for f in images.files])
    labels = [images.label(i) for i in range(len(images))]
    return Inputs(TransformedImages(images, eval_transform(inp.image_size, mean, std)), names, collate_images,
                  labels if min(labels, default=-1) >= 0 else None)


def audio_inputs(path: str | Path, cfg: PretrainConfig, options: InputOptions = InputOptions()) -> Inputs:
    path, label_ext, limit = Path(path), options.label_ext, options.limit
    if path.is_dir():
        files = find_audio_files(path)
        if not files:
            raise ValueError(f"{path}: holds no audio files")
    elif path.suffix == ".tsv":
        root, entries = read_manifest(path)
        files = [root / e.path for e in entries]
    elif path.exists():
        raise ValueError(f"{path}: expected a folder of audio files or a manifest (.tsv)")
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    labels = read_label_lines(path, label_ext, len(files)) if label_ext else None
    if limit:
        files, labels = files[:limit], labels[:limit] if labels else labels
    normalize = bool(getattr(cfg.data, "normalize", True))
    return Inputs(_Audio(files, normalize), [str(f) for f in files], collate_audio, labels, same_length=True)


def text_inputs(path: str | Path, cfg: PretrainConfig, options: InputOptions) -> Inputs:
    path, tokenizer, label_column, limit = Path(path), options.tokenizer, options.label_column, options.limit
    if tokenizer is None:
        raise ValueError("text inputs need a tokenizer (--tokenizer)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() in TEXT_SUFFIXES:
        data = read_labeled(path, [options.text_column], label_column, header=options.header)
        texts = [t[0] for t in data.texts]
        labels = [data.label_names[i] for i in data.labels] if label_column is not None else None
    else:
        if label_column is not None:
            raise ValueError(f"{path}: a plain text file has no label column; use a TSV/CSV/JSONL file")
        texts, labels = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()], None
    if limit:
        texts, labels = texts[:limit], labels[:limit] if labels else labels
    budget = cfg.model.input.max_positions - 2
    ids = [[tokenizer.bos] + t[:budget] + [tokenizer.eos] for t in tokenizer.encode_batch(texts)]
    names = [f"{path}:{i + 1}" for i in range(len(texts))]
    return Inputs(_Tokens(ids), names, _collate_text(tokenizer.pad), labels)


def open_inputs(path: str | Path, cfg: PretrainConfig, **options: Any) -> Inputs:
    """The inputs at `path` for a model of `cfg`, read by its modality's reader; `options` are
    the fields of `InputOptions`."""
    from data2vec.modalities.registry import input_reader

    return input_reader(cfg.model.input.kind)(path, cfg, InputOptions(**options))
