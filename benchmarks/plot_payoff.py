"""Plot downstream accuracy against pretraining CPU-minutes from `probe_curve.py` results.

    .venv/bin/python benchmarks/plot_payoff.py runs/i1800/probe_curve.json --out docs/img/payoff-fmnist.png

One line per feature kind (linear probe on the probe's training images, top-1 % on the test
set) against `train_cpu_min` of each snapshot, with the raw-pixel probe as a dashed line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="probe_curve.json")
    ap.add_argument("--out", required=True, help="image file to write (.png)")
    ap.add_argument("--metric", default="lin", choices=["lin", "lin_small", "knn"])
    a = ap.parse_args()
    rows = json.loads(Path(a.results).read_text())["rows"]
    snaps = [r for r in rows if r.get("step") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for kind in snaps[-1]["student"]:
        xs = [r["train_cpu_min"] for r in snaps if kind in r["student"]]
        ax.plot(xs, [r["student"][kind][a.metric] for r in snaps if kind in r["student"]], marker="o", label=kind)
    for r in rows:
        if "pixels" in r:
            ax.axhline(r["pixels"][a.metric], color="gray", linestyle="--", label="raw pixels")
    ax.set_xlabel("pretraining CPU-minutes (one thread)")
    ax.set_ylabel(f"test top-1 % ({a.metric})")
    save_figure(fig, ax, a.out)


def save_figure(fig: plt.Figure, ax: plt.Axes, out: str) -> None:
    """Grid, legend, and the figure written to `out` (its folder made)."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
