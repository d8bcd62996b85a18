"""Labeled text for fine-tuning: GLUE-style TSV/CSV/JSONL files and CoNLL-style token labels.

Every malformed row raises ``ValueError("<file>, line <n>: <problem>")`` so that a bad line
in a 400k-row file can be found at once (or is skipped with a warning if asked).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

TASKS = ("classification", "regression")
FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
Column = str | int


@dataclass
class LabeledTexts:
    """Sentence or sentence-pair examples with one label each.

    ``texts[i]`` is a tuple of 1 or 2 strings (GLUE pairs). ``labels[i]`` is an int index
    into ``label_names`` for classification, a float for regression; ``labels`` is empty
    when the file was read without a label column. ``label_names`` is None for regression.
    """

    texts: list[tuple[str, ...]]
    labels: list
    label_names: list[str] | None
    task: str = "classification"

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TokenLabeledTexts:
    """Sentences of words with one label per word: ``labels[i][j]`` indexes ``label_names``."""

    words: list[list[str]]
    labels: list[list[int]]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.words)


class _RowError(Exception):
    pass


def _open(path: Path):
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, list[str] | dict]]:
    """(line number, row) pairs; blank lines are skipped."""
    with _open(path) as f:
        if fmt == "csv":
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    yield reader.line_num, row
            return
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if fmt == "tsv":
                # GLUE TSVs contain unbalanced quotes, so no csv quoting rules: split on tabs.
                yield lineno, line.split("\t")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _cell(row: list[str] | dict, col: Column, header: list[str] | None) -> str:
    if isinstance(row, dict):
        if col not in row or row[col] is None:
            raise _RowError(f"missing column {col!r}")
        return str(row[col])
    index = header.index(col) if isinstance(col, str) else col
    if index >= len(row):
        raise _RowError(f"missing column {col!r} (row has {len(row)} fields)")
    return row[index]


def _parse_row(row, text_columns, label_column, task, header) -> tuple[tuple[str, ...], str | float | None]:
    texts = tuple(_cell(row, c, header) for c in text_columns)
    for c, t in zip(text_columns, texts):
        if not t.strip():
            raise _RowError(f"empty text in column {c!r}")
    if label_column is None:
        return texts, None
    raw = _cell(row, label_column, header).strip()
    if task == "classification":
        return texts, raw
    try:
        value = float(raw)
    except ValueError:
        raise _RowError(f"regression target {raw!r} in column {label_column!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowError(f"regression target {raw!r} in column {label_column!r} is not finite")
    return texts, value


def _sort_labels(names: set[str]) -> list[str]:
    try:  # numeric labels ("0", "1", "10") in numeric order
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _check_header(path: Path, fmt: str, header: list[str] | None, columns: list[Column]) -> None:
    for c in columns:
        if isinstance(c, int) and fmt == "jsonl":
            raise ValueError(f"{path}: JSONL columns are keys, not indices ({c})")
        if isinstance(c, str) and fmt != "jsonl":
            if header is None:
                raise ValueError(f"{path}: column {c!r} given by name but header=False; use its index")
            if c not in header:
                raise ValueError(f"{path}, line 1: header has no column {c!r} (it has {header})")


def read_labeled(
    path: str | os.PathLike,
    text_columns: Column | Sequence[Column],
    label_column: Column | None,
    task: str = "classification",
    labels: Sequence[str] | None = None,
    fmt: str | None = None,
    header: bool = True,
    skip_bad_rows: bool = False,
) -> LabeledTexts:
    """Read a TSV/CSV/JSONL file of one or two text columns and a label (GLUE layout).

    Columns are header names (or 0-based indices for header-less TSV/CSV; keys for JSONL).
    ``labels`` fixes the label set and its id order; pass the training set's ``label_names``
    when reading valid/test files. Without it the set is read from the file, sorted
    (numerically when all labels are numbers). ``label_column=None`` reads unlabeled files.
    ``fmt`` ("tsv", "csv", "jsonl") defaults to the file extension.
    Bad rows (missing column, empty text, label not in ``labels``, non-numeric regression
    target) raise ValueError naming the file and line, or are skipped with one warning when
    ``skip_bad_rows``.
    """
    path = Path(path)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in FORMATS.values():
        raise ValueError(f"{path}: unknown format; give fmt='tsv', 'csv' or 'jsonl'")
    cols = [text_columns] if isinstance(text_columns, (str, int)) else list(text_columns)
    if not 1 <= len(cols) <= 2:
        raise ValueError(f"text_columns must name one or two columns, got {cols}")
    rows = _rows(path, fmt)
    names = None
    if header and fmt != "jsonl":
        first = next(rows, None)
        names = [c.strip() for c in first[1]] if first else []
    _check_header(path, fmt, names, cols + ([label_column] if label_column is not None else []))
    label_set = {name: i for i, name in enumerate(labels)} if labels is not None else None
    texts, raw_labels, bad = [], [], []
    for lineno, row in rows:
        try:
            t, y = _parse_row(row, cols, label_column, task, names)
            if label_set is not None and task == "classification" and y is not None and y not in label_set:
                raise _RowError(f"label {y!r} is not one of {list(label_set)}")
        except _RowError as e:
            if not skip_bad_rows:
                raise ValueError(f"{path}, line {lineno}: {e}") from None
            bad.append(f"line {lineno}: {e}")
            continue
        texts.append(t)
        if y is not None:
            raw_labels.append(y)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} bad row(s), first: {bad[0]}", stacklevel=2)
    if not texts:
        raise ValueError(f"{path}: no examples")
    if task == "regression" or label_column is None:
        return LabeledTexts(texts, raw_labels, None, task)
    if label_set is None:
        label_set = {name: i for i, name in enumerate(_sort_labels(set(raw_labels)))}
    return LabeledTexts(texts, [label_set[y] for y in raw_labels], list(label_set), task)


def read_token_classification(path: str | os.PathLike, labels: Sequence[str] | None = None) -> TokenLabeledTexts:
    """Read CoNLL-style word labels: ``word<TAB>label`` lines, a blank line between sentences.

    Fields may also be space-separated with extra middle columns (CoNLL-2003's
    ``word POS chunk NER``): the first is the word, the last the label. ``-DOCSTART-`` lines
    are skipped. ``labels`` fixes the label set (pass the training set's ``label_names`` for
    valid/test); otherwise it is the sorted set found in the file.
    """
    path = Path(path)
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    with _open(path) as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split("\t") if "\t" in line else line.split()
            fields = [x.strip() for x in fields]
            if not line.strip():
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            if fields[0] == "-DOCSTART-":
                continue
            if len(fields) < 2 or not fields[0] or not fields[-1]:
                raise ValueError(f"{path}, line {lineno}: expected 'word<TAB>label', got {line.rstrip()!r}")
            if labels is not None and fields[-1] not in labels:
                raise ValueError(f"{path}, line {lineno}: label {fields[-1]!r} is not one of {list(labels)}")
            words.append(fields[0])
            tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    names = list(labels) if labels is not None else sorted({t for _, ts in sentences for t in ts})
    index = {n: i for i, n in enumerate(names)}
    return TokenLabeledTexts([w for w, _ in sentences], [[index[t] for t in ts] for _, ts in sentences], names)
