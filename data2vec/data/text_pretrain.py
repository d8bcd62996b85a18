"""Text pretraining data: raw text files -> tokenizer (trained or loaded) -> cached memmap corpus
-> token blocks of up to `block_size` tokens, batched with a padding mask.

The tokenizer and the encoded corpus are cached in a folder named by a hash of the source files
(paths, sizes, modification times), `doc_mode` and the tokenizer choice, so a second run with the
same data starts at once and a changed file is re-encoded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Literal
from functools import partial
from pathlib import Path

from data2vec.config import DataConfig, InputConfig, TrainConfig, register_kind
from data2vec.data.text_corpus import TokenBlockDataset, collate_tokens, encode_corpus, list_text_files
from data2vec.data.text_fortunes import fortune_files, read_fortune_file
from data2vec.data.tokenizer import TextTokenizer, train_bpe
from data2vec.train.data import FixedBatchData

DEFAULT_CACHE = Path.home() / ".cache" / "data2vec" / "text"


@register_kind
@dataclass(frozen=True)
class TextDataConfig(DataConfig):
    """Unlabeled text for pretraining: a text file or a folder of them."""

    kind: str = "text"
    path: str = ""
    # How documents are separated: blank lines, one per line, or lines holding only "%"
    # (the fortune/strfile format; a folder is read as fortune files, skipping .dat/.u8).
    doc_mode: Literal["blank_line", "line", "percent"] = "blank_line"
    tokenizer: str = ""  # tokenizer.json or folder (fairseq GPT-2 trio); "" trains a BPE of model.input.vocab_size
    cache_dir: str = ""  # "" -> ~/.cache/data2vec/text
    block_size: int = 512  # tokens per sample including the leading <s>
    break_mode: Literal["none", "complete_doc"] = "none"  # none: data2vec 2.0; complete_doc: 1.0


def _source_files(data: TextDataConfig) -> list[Path]:
    if not data.path:
        raise ValueError("data.path is empty: give a text file or a folder of them, e.g. data.path=/my/corpus")
    if data.doc_mode == "percent" and Path(data.path).is_dir():
        return list(fortune_files(data.path).values())
    return list_text_files(data.path)


def _cache_key(files: list[Path], data: TextDataConfig, vocab_size: int) -> str:
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    tok = str(Path(data.tokenizer).resolve()) if data.tokenizer else f"bpe{vocab_size}"
    blob = json.dumps({"files": stats, "doc_mode": data.doc_mode, "tokenizer": tok}).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _plain_documents(files: list[Path], doc_mode: str, folder: Path) -> tuple[list[Path], str]:
    """Files and doc mode `encode_corpus` reads: fortune files become one blank-line-separated file."""
    if doc_mode != "percent":
        return files, doc_mode
    out = folder / "documents.txt"
    if not out.exists():
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for path in files:
                for quote in read_fortune_file(path):
                    # Blank lines inside a quote would split it into two documents.
                    f.write("\n".join(line for line in quote.splitlines() if line.strip()) + "\n\n")
        os.replace(tmp, out)
    return [out], "blank_line"


def prepare_text_corpus(data: TextDataConfig, vocab_size: int) -> tuple[TextTokenizer, str]:
    """Build (or reuse from the cache) the tokenizer and the encoded corpus of `data`.

    Returns the tokenizer and the corpus prefix for `TokenBlockDataset`.
    """
    files = _source_files(data)
    folder = Path(data.cache_dir or DEFAULT_CACHE) / _cache_key(files, data, vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    docs, doc_mode = _plain_documents(files, data.doc_mode, folder)
    if data.tokenizer:
        tokenizer = TextTokenizer.load(data.tokenizer)
    else:
        tok_path = folder / "tokenizer.json"
        if not tok_path.exists():
            tmp = folder / f"tokenizer.{os.getpid()}.tmp.json"
            train_bpe(docs, vocab_size, tmp)
            os.replace(tmp, tok_path)
        tokenizer = TextTokenizer.load(tok_path)
    prefix = folder / "corpus"
    if not Path(f"{prefix}.meta.json").exists():
        encode_corpus(docs, tokenizer, prefix, doc_mode=doc_mode)
    return tokenizer, str(prefix)


def check_tokenizer(tokenizer: TextTokenizer, inp: InputConfig) -> None:
    """The model's embedding must cover the tokenizer's ids and agree on the padding id."""
    if tokenizer.vocab_size > inp.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but model.input.vocab_size="
                         f"{inp.vocab_size}; raise model.input.vocab_size")
    if tokenizer.pad != inp.pad_id:
        raise ValueError(f"the tokenizer's <pad> id is {tokenizer.pad} but model.input.pad_id={inp.pad_id}")


def text_tokenizer(data: TextDataConfig, inp: InputConfig) -> TextTokenizer:
    """The tokenizer a text pretraining config uses (for fine-tuning its checkpoints)."""
    tokenizer = TextTokenizer.load(data.tokenizer) if data.tokenizer else prepare_text_corpus(data, inp.vocab_size)[0]
    check_tokenizer(tokenizer, inp)
    return tokenizer


def build_text_data(data: TextDataConfig, inp: InputConfig, train: TrainConfig) -> FixedBatchData:
    if data.block_size > inp.max_positions:
        raise ValueError(f"data.block_size={data.block_size} exceeds model.input.max_positions={inp.max_positions}")
    tokenizer, prefix = prepare_text_corpus(data, inp.vocab_size)
    check_tokenizer(tokenizer, inp)
    blocks = TokenBlockDataset(prefix, data.block_size, data.break_mode)
    if len(blocks) < train.batch_size:
        raise ValueError(f"{data.path}: only {len(blocks)} blocks of {data.block_size} tokens, fewer than "
                         f"train.batch_size={train.batch_size}")
    collate = partial(collate_tokens, pad_id=tokenizer.pad)
    return FixedBatchData(blocks, collate, train.batch_size, train.seed, train.num_workers)
