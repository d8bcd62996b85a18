"""Text tokenizers: byte-level BPE trained here, or fairseq's GPT-2 BPE + ``dict.txt``.

Both kinds expose the fairseq/RoBERTa special ids ``<s>``=0, ``<pad>``=1, ``</s>``=2,
``<unk>``=3 and ``<mask>`` as the last id, so a model never needs to know which kind it got.

* ``tokenizer.json``: a ``tokenizers`` file, e.g. from :func:`train_bpe` (or a Hugging Face
  RoBERTa ``tokenizer.json``, which uses the same ids).
* fairseq GPT-2 (the released data2vec/RoBERTa text models): ``encoder.json`` + ``vocab.bpe``
  give GPT-2 BPE ids, and ``dict.txt`` maps them to model ids exactly as fairseq does:
  ``<s> <pad> </s> <unk>``, then the ``dict.txt`` lines in order, then ``<mask>`` (added by
  fairseq's ``masked_lm`` task). A GPT-2 id absent from ``dict.txt`` maps to ``<unk>``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data2vec.data.text_corpus import list_text_files

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"
GPT2_FILES = ("encoder.json", "vocab.bpe", "dict.txt")
_OVERWRITE_FLAG = "#fairseq:overwrite"


def _byte_level(tokenizer: Tokenizer) -> Tokenizer:
    # add_prefix_space=False and the GPT-2 regex make this identical to GPT-2/fairseq BPE.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _iter_lines(files: Iterable[str | os.PathLike]) -> Iterator[str]:
    for path in files:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            for line in f:
                if line.strip():
                    yield line.rstrip("\r\n")


def train_bpe(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    vocab_size: int,
    out_path: str | os.PathLike,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a byte-level BPE on text files (or folders of them) and save ``tokenizer.json``.

    ``vocab_size`` counts everything: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, the
    learned tokens, and ``<mask>`` = ``vocab_size - 1`` (fewer if the corpus has too few merges).
    ``out_path`` is a folder (``tokenizer.json`` is written inside) or a ``.json`` file path.
    Undecodable bytes are read as U+FFFD instead of failing.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256 + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level BPE (min 261)")
    roots = [files] if isinstance(files, (str, os.PathLike)) else files
    paths = [p for f in roots for p in list_text_files(f)]
    tokenizer = _byte_level(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # leave room for <mask>, appended last like fairseq
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_iter_lines(paths), trainer=trainer)
    tokenizer.add_special_tokens([MASK_TOKEN])
    out = Path(out_path)
    target = out if out.suffix == ".json" else out / "tokenizer.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(target))
    return tokenizer


def _parse_dict_txt(text: str, source: str) -> list[str]:
    """fairseq ``Dictionary.add_from_file``: the 4 specials, then the file's symbols in order.

    As in fairseq, a line flagged ``#fairseq:overwrite`` appends a new id even for a token
    already present (that token then encodes to the newest id); other duplicates are errors.
    """
    symbols = list(SPECIAL_TOKENS)
    seen = set(symbols)
    # StringIO with newline=None splits lines exactly like fairseq's open().readlines().
    for lineno, line in enumerate(io.StringIO(text, newline=None), start=1):
        line = line.rstrip()
        if not line:
            continue
        word, _, field = line.rpartition(" ")
        overwrite = field == _OVERWRITE_FLAG
        if overwrite:
            word, _, field = word.rpartition(" ")
        if not word or not field.lstrip("-").isdigit():
            raise ValueError(f"{source}, line {lineno}: expected '<token> <count> [flags]', got {line!r}")
        if word in seen and not overwrite:
            raise ValueError(f"{source}, line {lineno}: duplicate token {word!r} "
                             f"(fairseq needs '{_OVERWRITE_FLAG}' to allow it)")
        symbols.append(word)
        seen.add(word)
    return symbols


def _parse_merges(text: str) -> list[tuple[str, str]]:
    merges = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return merges


class TextTokenizer:
    """Text ↔ model ids, with fairseq special ids (see the module docstring).

    Build with :meth:`load`, :meth:`from_tokenizer_json` or :meth:`from_gpt2_files`.
    ``encode`` adds no special tokens: callers add ``<s>``/``</s>`` where the format needs them.
    """

    def __init__(self, tokenizer: Tokenizer, gpt2_files: dict[str, bytes] | None = None):
        self._tok = tokenizer
        # Text that happens to contain "<s>" or "<mask>" must stay text, as in fairseq.
        self._tok.encode_special_tokens = True
        self._gpt2_files = gpt2_files
        if gpt2_files is None:
            self._symbols = None
            ids = {t: tokenizer.token_to_id(t) for t in (*SPECIAL_TOKENS, MASK_TOKEN)}
            missing = [t for t, i in ids.items() if i is None]
            if missing:
                raise ValueError(f"tokenizer has no special token(s) {missing}; "
                                 f"expected {list(SPECIAL_TOKENS) + [MASK_TOKEN]}")
            self.bos, self.pad, self.eos, self.unk, self.mask = ids.values()
            self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
            return
        symbols = _parse_dict_txt(gpt2_files["dict.txt"].decode("utf-8"), "dict.txt")
        if MASK_TOKEN not in symbols:  # fairseq masked_lm: dictionary.add_symbol("<mask>")
            symbols.append(MASK_TOKEN)
        self._symbols = symbols
        self.bos, self.pad, self.eos, self.unk = range(4)
        index = {sym: i for i, sym in enumerate(symbols)}  # the last id wins, as in fairseq
        self.mask = index[MASK_TOKEN]
        self.vocab_size = len(symbols)
        n_gpt2 = tokenizer.get_vocab_size(with_added_tokens=True)
        # Lookup tables GPT-2 id -> model id and back; -1 marks model ids that are no GPT-2 id.
        self._to_model = np.full(n_gpt2, self.unk, dtype=np.int64)
        self._to_gpt2 = np.full(len(symbols), -1, dtype=np.int64)
        for i, sym in enumerate(symbols):
            if sym.isdigit() and int(sym) < n_gpt2:
                self._to_gpt2[i] = int(sym)
        for sym, i in index.items():
            if sym.isdigit() and int(sym) < n_gpt2:
                self._to_model[int(sym)] = i

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike) -> TextTokenizer:
        """A ``tokenizers`` JSON file holding ``<s> <pad> </s> <unk> <mask>``."""
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike,
                        dict_txt: str | os.PathLike) -> TextTokenizer:
        """fairseq GPT-2 BPE (``encoder.json``, ``vocab.bpe``) with a fairseq ``dict.txt``."""
        files = {name: Path(p).read_bytes() for name, p in zip(GPT2_FILES, (encoder_json, vocab_bpe, dict_txt))}
        vocab = json.loads(files["encoder.json"])
        merges = _parse_merges(files["vocab.bpe"].decode("utf-8"))
        tokenizer = _byte_level(Tokenizer(models.BPE(vocab=vocab, merges=merges)))
        return cls(tokenizer, gpt2_files=files)

    @classmethod
    def load(cls, path_or_dir: str | os.PathLike) -> TextTokenizer:
        """A ``tokenizer.json`` file, or a folder with the fairseq trio or a ``tokenizer.json``."""
        path = Path(path_or_dir)
        if path.is_file():
            return cls.from_tokenizer_json(path)
        if all((path / f).is_file() for f in GPT2_FILES):
            return cls.from_gpt2_files(*(path / f for f in GPT2_FILES))
        if (path / "tokenizer.json").is_file():
            return cls.from_tokenizer_json(path / "tokenizer.json")
        raise FileNotFoundError(f"no tokenizer in {path}: expected tokenizer.json, "
                                f"or {', '.join(GPT2_FILES)} (fairseq GPT-2 BPE)")

    @property
    def kind(self) -> str:
        """``"fairseq_gpt2"`` or ``"tokenizer_json"``."""
        return "tokenizer_json" if self._gpt2_files is None else "fairseq_gpt2"

    def encode(self, text: str) -> list[int]:
        """Model ids of ``text``, without ``<s>``/``</s>``."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (the Rust side runs them in parallel)."""
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        if self._symbols is None:
            return [e.ids for e in encodings]
        return [self._to_model[np.asarray(e.ids, dtype=np.int64)].tolist() for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of model ids; ``<s>``, ``<pad>`` and ``</s>`` are dropped, other specials kept as text."""
        drop = {self.bos, self.pad, self.eos}
        ids = [int(i) for i in ids if int(i) not in drop]
        if self._symbols is None:
            return self._tok.decode(ids, skip_special_tokens=False)
        # Runs of GPT-2 ids go through the byte-level decoder; other symbols
        # (<unk>, <mask>, madeupword0000) have no bytes and are written literally.
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            g = int(self._to_gpt2[i])
            if g >= 0:
                run.append(g)
                continue
            if run:
                parts.append(self._tok.decode(run))
                run = []
            parts.append(self._symbols[i])
        if run:
            parts.append(self._tok.decode(run))
        return "".join(parts)

    def id_to_token(self, i: int) -> str:
        """The dictionary symbol of a model id (a GPT-2 id as a string in the fairseq case)."""
        if self._symbols is None:
            return self._tok.id_to_token(i)
        return self._symbols[i]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write the files :meth:`load` reads back into ``out_dir``; returns the folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self._gpt2_files is None:
            self._tok.save(str(out / "tokenizer.json"))
        else:
            for name, data in self._gpt2_files.items():
                (out / name).write_bytes(data)
        return out

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, mask={self.mask})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``data2vec tokenizer``: ``train --files ... --vocab-size N --out DIR``."""
    sub = parser.add_subparsers(dest="tokenizer_command", required=True)
    train = sub.add_parser("train", help="train a byte-level BPE tokenizer on text files")
    train.add_argument("--files", nargs="+", required=True, help="text files or folders of them")
    train.add_argument("--vocab-size", type=int, default=32000, help="total size incl. specials and <mask>")
    train.add_argument("--min-frequency", type=int, default=2, help="min count of a pair to merge")
    train.add_argument("--out", required=True, help="output folder (tokenizer.json is written there)")


def run(args: argparse.Namespace) -> int:
    """Run a ``data2vec tokenizer`` sub-command parsed by :func:`add_arguments`; returns 0."""
    if args.tokenizer_command != "train":
        raise ValueError(f"unknown tokenizer command {args.tokenizer_command!r}")
    train_bpe(args.files, args.vocab_size, args.out, min_frequency=args.min_frequency)
    tok = TextTokenizer.load(args.out)
    print(f"saved {Path(args.out) / 'tokenizer.json'}: vocab_size={tok.vocab_size} "
          f"(<s>={tok.bos} <pad>={tok.pad} </s>={tok.eos} <unk>={tok.unk} <mask>={tok.mask})")
    return 0
