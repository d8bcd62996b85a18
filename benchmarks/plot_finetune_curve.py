"""Plot fine-tuned test scores against pretraining minutes, from the `results.json` of finetune runs.

    .venv/bin/python benchmarks/plot_finetune_curve.py --metric cer --title "speech CTC, 300 labels" \
        --baseline 'runs/spfin-random-*' --point 30='runs/sp30-student-*' --point 120='runs/sp120-student-*' \
        --out docs/img/payoff-speech.png

Each `--point MINUTES=GLOB` is one pretraining checkpoint: the runs the glob matches (one per seed)
give the mean and standard deviation drawn at MINUTES. `--baseline GLOB` is the random-init arm of
the same recipe, drawn as a band (it has no pretraining minutes). Prints the table it plots.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def scores(pattern: str, metric: str) -> list[float]:
    """The test `metric` of every run folder `pattern` matches; an error if none match."""
    found = []
    for run in sorted(glob.glob(pattern)):
        path = Path(run) / "results.json"
        if not path.is_file():
            continue
        test = json.loads(path.read_text()).get("test")
        if not test or metric not in test:
            raise SystemExit(f"{path}: no test '{metric}' (has {sorted(test or {})})")
        found.append(float(test[metric]))
    if not found:
        raise SystemExit(f"{pattern}: no run folder with a results.json")
    return found


def summary(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--point", action="append", required=True, metavar="MINUTES=GLOB")
    ap.add_argument("--baseline", help="glob of the random-init runs")
    ap.add_argument("--metric", required=True, help="a key of results.json's 'test', e.g. acc or cer")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", required=True, help="image file to write (.png)")
    a = ap.parse_args()
    points = []
    for spec in a.point:
        minutes, sep, pattern = spec.partition("=")
        if not sep:
            raise SystemExit(f"--point {spec!r}: expected MINUTES=GLOB")
        points.append((float(minutes), pattern, scores(pattern, a.metric)))
    points.sort()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    print(f"| pretraining minutes | seeds | test {a.metric} (mean +- sd) |\n|---|---|---|")
    if a.baseline:
        base = scores(a.baseline, a.metric)
        m, s = summary(base)
        print(f"| 0 (random init) | {len(base)} | {m:.2f} +- {s:.2f} |")
        ax.axhspan(m - s, m + s, color="gray", alpha=0.2)
        ax.axhline(m, color="gray", linestyle="--", label=f"random init ({len(base)} seeds)")
    xs, ms, ss = [], [], []
    for minutes, _, vals in points:
        m, s = summary(vals)
        print(f"| {minutes:g} | {len(vals)} | {m:.2f} +- {s:.2f} |")
        xs.append(minutes), ms.append(m), ss.append(s)
    ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label="pretrained (mean +- sd over seeds)")
    ax.set_xlabel("pretraining minutes (one thread)")
    ax.set_ylabel(f"test {a.metric}")
    ax.set_title(a.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
