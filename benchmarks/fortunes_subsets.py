"""Write the built-in fortunes task (quote -> category) as JSONL, with seeded low-label training subsets.

    .venv/bin/python benchmarks/fortunes_subsets.py runs/fortunes-ll --per-class 100 --seeds 1 2 3
    .venv/bin/python benchmarks/fortunes_subsets.py runs/fortunes6 --categories people work men-women art wisdom platitudes

Writes OUT/valid.jsonl and OUT/test.jsonl (the task's own splits: 248 and 252 quotes for the built-in
four categories; `--categories` builds the same kind of balanced task from other fortune files) and
OUT/train-SEED.jsonl: `--per-class` quotes of each category drawn from the task's 1,996 training
quotes with that seed. Rows are {"sentence": quote, "label": category}, which `data2vec finetune
--task sentence --train ... --valid ... --test ...` reads as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data2vec.data.text_fortunes import DEFAULT_CATEGORIES, FORTUNES_DIR, fortunes_classification  # noqa: E402


def write_jsonl(path: Path, texts: list[tuple[str, ...]], labels: list[int], names: list[str]) -> None:
    with open(path, "w") as f:
        for text, label in zip(texts, labels):
            f.write(json.dumps({"sentence": text[0], "label": names[label]}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES),
                    help="fortune files to classify (default: the built-in task's four)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    task = fortunes_classification(FORTUNES_DIR, a.categories)
    for split in ("valid", "test"):
        s = task[split]
        write_jsonl(out / f"{split}.jsonl", s.texts, s.labels, s.label_names)
    train = task["train"]
    for seed in a.seeds:
        rng = np.random.default_rng(seed)
        picked = [int(i) for c in range(len(train.label_names))
                  for i in rng.permutation([j for j, y in enumerate(train.labels) if y == c])[:a.per_class]]
        picked = [picked[i] for i in rng.permutation(len(picked))]
        write_jsonl(out / f"train-{seed}.jsonl", [train.texts[i] for i in picked], [train.labels[i] for i in picked],
                    train.label_names)
    print(f"wrote {out}: {len(a.seeds)} training subsets of {a.per_class} per class of {len(train.label_names)}, "
          f"valid ({len(task['valid'].labels)}), test ({len(task['test'].labels)})")


if __name__ == "__main__":
    main()
