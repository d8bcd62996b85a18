"""Plot fine-tuned test scores against pretraining minutes, from the `results.json` of finetune runs.

    .venv/bin/python benchmarks/plot_finetune_curve.py --metric cer --title "speech CTC, 300 labels" \
        --baseline 'runs/spfin-random-*' --point 30='runs/sp30-student-*' --point 120='runs/sp120-student-*' \
        --out docs/img/payoff-speech.png

Each `--point MINUTES=GLOB[=SERIES]` is one pretraining checkpoint: the runs the glob matches (one
per seed) give the mean and standard deviation drawn at MINUTES; points of one SERIES (default
"pretrained", e.g. the snapshots of one schedule) are joined by a line. `--baseline GLOB` is the random-init arm of
the same recipe, drawn as a band (it has no pretraining minutes). Prints the table it plots.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

from plot_payoff import plt, save_figure  # benchmarks/ is the script's folder; pyplot on the Agg backend


def scores(pattern: str, metric: str, scale: float = 1.0) -> list[float]:
    """The test `metric` (times `scale`) of every run folder `pattern` matches; an error if none match."""
    found = []
    for run in sorted(glob.glob(pattern)):
        path = Path(run) / "results.json"
        if not path.is_file():
            continue
        test = json.loads(path.read_text()).get("test")
        if not test or metric not in test:
            raise SystemExit(f"{path}: no test '{metric}' (has {sorted(test or {})})")
        found.append(scale * float(test[metric]))
    if not found:
        raise SystemExit(f"{pattern}: no run folder with a results.json")
    return found


def summary(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--point", action="append", required=True, metavar="MINUTES=GLOB[=SERIES]")
    ap.add_argument("--baseline", help="glob of the random-init runs")
    ap.add_argument("--metric", required=True, help="a key of results.json's 'test', e.g. acc or cer")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the scores, e.g. 100 for fractions as %%")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", required=True, help="image file to write (.png)")
    a = ap.parse_args()
    series: dict[str, list[tuple[float, list[float]]]] = {}
    for spec in a.point:
        parts = spec.split("=")
        if len(parts) not in (2, 3):
            raise SystemExit(f"--point {spec!r}: expected MINUTES=GLOB or MINUTES=GLOB=SERIES")
        name = parts[2] if len(parts) == 3 else "pretrained"
        series.setdefault(name, []).append((float(parts[0]), scores(parts[1], a.metric, a.scale)))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    print(f"| encoder | pretraining minutes | seeds | test {a.metric} (mean +- sd) |\n|---|---|---|---|")
    if a.baseline:
        base = scores(a.baseline, a.metric, a.scale)
        m, s = summary(base)
        print(f"| random init | 0 | {len(base)} | {m:.2f} +- {s:.2f} |")
        ax.axhspan(m - s, m + s, color="gray", alpha=0.2)
        ax.axhline(m, color="gray", linestyle="--", label=f"random init (mean +- sd, {len(base)} seeds)")
    for name, points in series.items():
        points.sort(key=lambda p: p[0])
        stats = [summary(vals) for _, vals in points]
        for (minutes, vals), (m, s) in zip(points, stats):
            print(f"| {name} | {minutes:g} | {len(vals)} | {m:.2f} +- {s:.2f} |")
        ax.errorbar([p[0] for p in points], [m for m, _ in stats], yerr=[s for _, s in stats], marker="o",
                    capsize=3, label=f"{name} (mean +- sd over seeds)")
    ax.set_xlim(0, 1.08 * max(m for points in series.values() for m, _ in points))
    ax.set_xlabel("pretraining minutes (one thread)")
    ax.set_ylabel(f"test {a.metric}")
    ax.set_title(a.title, fontsize=10)
    save_figure(fig, ax, a.out)


if __name__ == "__main__":
    main()
