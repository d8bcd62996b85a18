"""Raw text corpora for masked-LM pretraining: read, encode once to a memory map, cut into blocks.

On-disk layout of an encoded corpus with prefix ``P`` (see :func:`encode_corpus`):

* ``P.tokens.npy`` (N,) uint16 (vocab < 65536) or int32: every document's tokens followed by
  ``</s>``, concatenated (fairseq appends ``</s>`` to every binarized item the same way).
* ``P.docs.npy`` (D+1,) int64 offsets: document d is ``tokens[docs[d]:docs[d+1]]``, ``</s>`` included.
* ``P.meta.json``: counts, dtype, special ids and the tokenizer's vocabulary size.

Labeled data (GLUE-style files, CoNLL token labels) and the fortunes demo task live in
``text_labeled`` and ``text_fortunes``; they are re-exported here.
"""

from __future__ import annotations

import json
import os
import struct
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from data2vec.data.text_fortunes import (  # noqa: F401  (re-exported)
    DEFAULT_CATEGORIES,
    FORTUNES_DIR,
    fortunes_classification,
    fortunes_corpus,
)
from data2vec.data.text_labeled import (  # noqa: F401  (re-exported)
    LabeledTexts,
    TokenLabeledTexts,
    read_labeled,
    read_token_classification,
)

if TYPE_CHECKING:
    from data2vec.data.tokenizer import TextTokenizer

PathLike = str | os.PathLike
DOC_MODES = ("blank_line", "line")
BREAK_MODES = ("none", "complete_doc")
_NPY_HEADER_BYTES = 128  # fixed, so the final shape can be written over the placeholder


def list_text_files(path: PathLike) -> list[Path]:
    """``[path]`` for a file; for a folder, its files (recursively, sorted, hidden ones skipped)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"no such text file or folder: {p}")
    files = [f for f in sorted(p.rglob("*"))
             if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)]
    if not files:
        raise FileNotFoundError(f"no text files in folder {p}")
    return files


def _file_documents(path: Path, doc_mode: str) -> Iterator[str]:
    # errors="replace": one stray byte in a web crawl must not stop a day-long encode.
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        lines: list[str] = []
        for line in f:
            line = line.rstrip()
            if doc_mode == "line":
                if line.strip():
                    yield line
            elif line.strip():
                lines.append(line)
            elif lines:
                yield "\n".join(lines)
                lines = []
        if lines:
            yield "\n".join(lines)


def read_documents(paths: PathLike | Iterable[PathLike], doc_mode: str = "blank_line") -> Iterator[str]:
    """Documents of text files or folders, lazily, in file order.

    ``doc_mode="blank_line"``: documents are separated by blank (or whitespace-only) lines and
    keep their inner line breaks; ``"line"``: every non-blank line is a document. Trailing
    whitespace is stripped from lines, empty files and blank lines yield nothing, and bytes that
    are not UTF-8 become U+FFFD.
    """
    if doc_mode not in DOC_MODES:
        raise ValueError(f"doc_mode must be one of {DOC_MODES}, got {doc_mode!r}")
    roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    for root in roots:
        for path in list_text_files(root):
            yield from _file_documents(path, doc_mode)


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """A version-1.0 .npy header for a 1-D array, padded to a fixed size."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)}
    text = repr(d).encode("latin1")
    body = _NPY_HEADER_BYTES - 10  # magic (6) + version (2) + header length (2)
    if len(text) + 1 > body:
        raise ValueError("array too long for the .npy header")
    text = text + b" " * (body - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body) + text


def _write_tokens(docs: Iterator[str], tokenizer: TextTokenizer, path: Path, dtype: np.dtype,
                  batch_docs: int) -> array:
    """Stream documents into ``path`` as a .npy; returns the (D+1,) document offsets."""
    offsets = array("q", [0])
    total = 0
    with open(path, "wb") as f:
        f.write(_npy_header(dtype, 0))
        while batch := list(islice(docs, batch_docs)):
            encoded = tokenizer.encode_batch(batch)
            lengths = np.fromiter((len(ids) + 1 for ids in encoded), dtype=np.int64, count=len(encoded))
            flat = np.empty(int(lengths.sum()), dtype=dtype)
            ends = np.cumsum(lengths)
            for ids, end in zip(encoded, ends):
                flat[end - len(ids) - 1:end - 1] = ids
            flat[ends - 1] = tokenizer.eos
            f.write(flat.tobytes())
            offsets.extend((ends + total).tolist())
            total += int(ends[-1])
        f.seek(0)
        f.write(_npy_header(dtype, total))
    return offsets


def _prefix_paths(prefix: PathLike) -> dict[str, Path]:
    p = str(prefix)
    return {k: Path(f"{p}.{k}") for k in ("tokens.npy", "docs.npy", "meta.json")}


def encode_corpus(
    files: PathLike | Sequence[PathLike],
    tokenizer: TextTokenizer,
    out_prefix: PathLike,
    doc_mode: str = "blank_line",
    batch_docs: int = 1000,
) -> dict:
    """Tokenize text files once into ``out_prefix.{tokens.npy,docs.npy,meta.json}``.

    Documents come from :func:`read_documents`; each is encoded without specials and followed by
    ``</s>``. Tokens are written ``batch_docs`` documents at a time, so a corpus larger than RAM
    streams through. Files are written under temporary names and renamed at the end, so an
    interrupted run leaves no half-written corpus; the names carry the process id, so two runs
    encoding the same corpus at once (two trainings sharing a cache) do not take each other's
    files. Returns the metadata dict.
    """
    paths = _prefix_paths(out_prefix)
    paths["tokens.npy"].parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size < 2**16 else np.int32)
    roots = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    tmp = {k: v.with_name(f"{v.name}.{os.getpid()}.tmp") for k, v in paths.items()}
    offsets = _write_tokens(read_documents(roots, doc_mode), tokenizer, tmp["tokens.npy"], dtype, batch_docs)
    if len(offsets) == 1:
        tmp["tokens.npy"].unlink()
        raise ValueError(f"no documents found in {[str(r) for r in roots]}")
    with open(tmp["docs.npy"], "wb") as f:
        np.save(f, np.frombuffer(offsets, dtype=np.int64))
    meta = {
        "format": "data2vec-text-corpus", "version": 1,
        "num_tokens": int(offsets[-1]), "num_docs": len(offsets) - 1, "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size, "bos": tokenizer.bos, "pad": tokenizer.pad,
        "eos": tokenizer.eos, "unk": tokenizer.unk, "mask": tokenizer.mask,
        "doc_mode": doc_mode, "sources": [str(r) for r in roots],
    }
    tmp["meta.json"].write_text(json.dumps(meta, indent=2) + "\n")
    for k in paths:
        os.replace(tmp[k], paths[k])
    return meta


def load_corpus_meta(prefix: PathLike) -> dict:
    """The metadata written by :func:`encode_corpus` for ``prefix``."""
    path = _prefix_paths(prefix)["meta.json"]
    if not path.is_file():
        raise FileNotFoundError(f"no encoded corpus at {prefix} (missing {path}); run encode_corpus first")
    return json.loads(path.read_text())


def block_slices(docs: np.ndarray, block_len: int, break_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ranges [start, end) of the blocks, each at most ``block_len`` long.

    ``docs`` (D+1,) are document offsets. ``"none"``: contiguous blocks over the whole stream,
    crossing documents (the last may be short). ``"complete_doc"``: whole documents packed
    greedily in order; a document longer than ``block_len`` is cut into ``block_len`` pieces,
    each its own block (the last may be short), and is never packed with other documents.
    """
    total = int(docs[-1])
    if break_mode == "none":
        starts = np.arange(0, total, block_len, dtype=np.int64)
        return starts, np.minimum(starts + block_len, total)
    if break_mode != "complete_doc":
        raise ValueError(f"break_mode must be one of {BREAK_MODES}, got {break_mode!r}")
    starts: list[int] = []
    ends: list[int] = []
    cur_start = cur_end = 0  # the block being packed is tokens[cur_start:cur_end]
    bounds = docs.tolist()
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e - s > block_len or e - cur_start > block_len:
            if cur_end > cur_start:
                starts.append(cur_start)
                ends.append(cur_end)
            cur_start = cur_end = s
        if e - s > block_len:
            pieces = range(s, e, block_len)
            starts.extend(pieces)
            ends.extend(min(p + block_len, e) for p in pieces)
            cur_start = cur_end = e
        else:
            cur_end = e
    if cur_end > cur_start:
        starts.append(cur_start)
        ends.append(cur_end)
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


class TokenBlockDataset(torch.utils.data.Dataset):
    """Fixed-size token blocks of an encoded corpus, read from the memory map.

    Follows fairseq's ``masked_lm`` task (RoBERTa, data2vec text): ``block_size`` is
    ``tokens_per_sample`` and *includes* the prepended ``<s>``. Each item is
    ``[<s>] + block`` where the block is up to ``block_size - 1`` corpus tokens (documents'
    ``</s>`` separators included, no extra ``</s>`` at the end), i.e. 1 + 511 = 512 by default.
    With ``prepend_bos=False`` the block is ``block_size`` tokens and nothing is added.
    ``break_mode`` is ``"none"`` (data2vec 2.0) or ``"complete_doc"`` (data2vec 1.0): see
    :func:`block_slices`. Blocks are computed once in ``__init__`` (a Python pass over the
    documents for ``complete_doc``).

    Items are (T,) int64 tensors, T <= block_size; ``sizes`` (len,) holds every T.
    """

    def __init__(self, prefix: PathLike, block_size: int = 512, break_mode: str = "none",
                 prepend_bos: bool = True):
        meta = load_corpus_meta(prefix)
        self.prefix = str(prefix)
        self.bos, self.pad, self.eos, self.mask = meta["bos"], meta["pad"], meta["eos"], meta["mask"]
        self.vocab_size = meta["vocab_size"]
        self.prepend_bos = prepend_bos
        block_len = block_size - 1 if prepend_bos else block_size
        if block_len < 1:
            raise ValueError(f"block_size={block_size} leaves no room for tokens")
        docs = np.load(_prefix_paths(prefix)["docs.npy"])
        self.starts, self.ends = block_slices(docs, block_len, break_mode)
        self.sizes = self.ends - self.starts + int(prepend_bos)
        self._tokens: np.ndarray | None = None

    def tokens(self) -> np.ndarray:
        """The whole (N,) token stream, memory-mapped (opened lazily, once per process)."""
        if self._tokens is None:
            self._tokens = np.load(_prefix_paths(self.prefix)["tokens.npy"], mmap_mode="r")
        return self._tokens

    def __getstate__(self) -> dict:
        # Pickling a memmap copies the whole corpus into every DataLoader worker; reopen instead.
        state = self.__dict__.copy()
        state["_tokens"] = None
        return state

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor:
        s, e = int(self.starts[index]), int(self.ends[index])
        out = np.empty(e - s + int(self.prepend_bos), dtype=np.int64)
        if self.prepend_bos:
            out[0] = self.bos
        out[int(self.prepend_bos):] = self.tokens()[s:e]
        return torch.from_numpy(out)


def collate_tokens(items: Sequence[torch.Tensor | Sequence[int]], pad_id: int,
                   pad_to_multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad 1-D token sequences to the longest (rounded up to ``pad_to_multiple``).

    Returns ``"tokens"`` (B, T) int64 and ``"padding_mask"`` (B, T) bool, True at padding.
    """
    if not items:
        raise ValueError("collate_tokens needs at least one item")
    seqs = [torch.as_tensor(x, dtype=torch.long) for x in items]
    longest = max(len(s) for s in seqs)
    longest = -(-longest // pad_to_multiple) * pad_to_multiple
    tokens = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    padding_mask = torch.ones((len(seqs), longest), dtype=torch.bool)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = s
        padding_mask[i, :len(s)] = False
    return {"tokens": tokens, "padding_mask": padding_mask}
