"""A small real text demo from the Debian ``fortunes`` package (about 15k quotes, 0.44 M words).

Fortune files hold quotes separated by lines containing only ``%``; each category is one file
in ``/usr/share/games/fortunes`` next to its ``.dat`` index (binary, skipped) and a ``.u8``
symlink to the same text (skipped so that no quote is read twice). Subfolders (``off/`` from
``fortunes-off``, ROT13-encoded) are not read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data2vec.data.text_labeled import LabeledTexts

FORTUNES_DIR = "/usr/share/games/fortunes"
# Four topics with 600+ quotes each in fortunes 1:1.99 (Debian 12): computers 1051,
# songs-poems 720, politics 703, science 625. They differ in vocabulary (code and machines,
# verse, government, scientists and maths) yet are not trivially separable by format
# (unlike "definitions", whose quotes all start "Word, n.:"): a bag-of-words naive Bayes
# scores about 65% on the default test split (chance 25%), so there is room for a model.
DEFAULT_CATEGORIES = ("computers", "politics", "science", "songs-poems")
_SKIP_SUFFIXES = (".dat", ".u8")


def _not_installed(directory: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"no fortune files in {directory}: install the Debian package 'fortunes' "
        f"(sudo apt-get install fortunes fortunes-min), or pass the folder holding them")


def fortune_files(dir: str | os.PathLike = FORTUNES_DIR) -> dict[str, Path]:
    """Category name -> fortune text file, sorted by name (``.dat``, ``.u8``, symlinks to an
    already listed file, hidden files and subfolders are skipped)."""
    directory = Path(dir)
    if not directory.is_dir():
        raise _not_installed(directory)
    files: dict[str, Path] = {}
    seen: set[Path] = set()
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") or p.suffix in _SKIP_SUFFIXES or not p.is_file():
            continue
        real = p.resolve()
        if real not in seen:
            seen.add(real)
            files[p.name] = p
    if not files:
        raise _not_installed(directory)
    return files


def read_fortune_file(path: str | os.PathLike) -> list[str]:
    """Quotes of one fortune file, in file order, trailing spaces and blank edge lines removed."""
    quotes: list[str] = []
    lines: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip()
            if line == "%":
                quotes.append("\n".join(lines).strip("\n"))
                lines = []
            else:
                lines.append(line)
    quotes.append("\n".join(lines).strip("\n"))
    return [q for q in quotes if q.strip()]


def _category_quotes(dir: str | os.PathLike, categories: Sequence[str] | None) -> dict[str, list[str]]:
    files = fortune_files(dir)
    names = list(files) if categories is None else list(categories)
    missing = [c for c in names if c not in files]
    if missing:
        raise ValueError(f"fortune categories {missing} not in {dir} (the full set comes with the "
                         f"Debian package 'fortunes'); available: {sorted(files)}")
    return {c: read_fortune_file(files[c]) for c in names}


def fortunes_corpus(dir: str | os.PathLike = FORTUNES_DIR, categories: Sequence[str] | None = None) -> list[str]:
    """All quotes (of ``categories``, default all files) as documents, category by category."""
    return [q for quotes in _category_quotes(dir, categories).values() for q in quotes]


def fortunes_classification(
    dir: str | os.PathLike = FORTUNES_DIR,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    seed: int = 0,
    per_class: int | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, LabeledTexts]:
    """A balanced, deterministic quote -> category task: ``{"train", "valid", "test"}``.

    Quotes found in more than one chosen category, and repeats within one, are dropped (they
    would be unlearnable or leak between splits). Each category keeps ``per_class`` quotes
    (default: as many as the smallest category has, 624 for the default four), drawn with
    ``seed``; each is split by ``fractions``, so every split is balanced too. Labels index
    ``categories`` in the order given. Same arguments and package version -> same task.
    """
    if len(categories) < 2:
        raise ValueError("a classification task needs at least two categories")
    if len(set(categories)) != len(categories):
        raise ValueError(f"categories repeat: {list(categories)}")
    raw = _category_quotes(dir, categories)
    owners: dict[str, set[str]] = {}
    for c, quotes in raw.items():
        for q in quotes:
            owners.setdefault(q, set()).add(c)
    unique = {c: list(dict.fromkeys(q for q in quotes if len(owners[q]) == 1)) for c, quotes in raw.items()}
    smallest = min(len(q) for q in unique.values())
    n = smallest if per_class is None else per_class
    if n > smallest or n < 10:
        raise ValueError(f"per_class={n} must be in [10, {smallest}] (quotes per category: "
                         f"{ {c: len(q) for c, q in unique.items()} })")
    rng = np.random.default_rng(seed)
    n_train, n_valid = int(n * fractions[0]), int(n * fractions[1])
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "valid": [], "test": []}
    for label, c in enumerate(categories):
        picked = [unique[c][i] for i in rng.permutation(len(unique[c]))[:n]]
        splits["train"] += [(q, label) for q in picked[:n_train]]
        splits["valid"] += [(q, label) for q in picked[n_train:n_train + n_valid]]
        splits["test"] += [(q, label) for q in picked[n_train + n_valid:]]
    out = {}
    for name, examples in splits.items():
        order = rng.permutation(len(examples))  # mix the classes; the draw order is seeded
        out[name] = LabeledTexts([(examples[i][0],) for i in order], [examples[i][1] for i in order],
                                 list(categories), "classification")
    return out
