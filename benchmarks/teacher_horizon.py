"""How much of its random initialisation each preset's EMA teacher keeps at the end of its run.

    .venv/bin/python benchmarks/teacher_horizon.py

The teacher after t updates is prod(decay) * init + the rest from the student; this prints that
product at the middle and the end of `train.max_steps` for every preset (arithmetic on the
configs, no training). Meta's schedules leave ~1e-6 or less; a preset whose teacher keeps more
than 1% at the end trains its student towards a largely random network's features.
"""

from __future__ import annotations

import argparse

from data2vec.algorithms.ema import init_share
from data2vec.presets import get_preset, list_presets


def rows() -> list[tuple[str, int, str, float, float]]:
    out = []
    for name in list_presets():
        cfg = get_preset(name)
        t, n = cfg.model.teacher, cfg.train.max_steps
        schedule = f"{t.decay} -> {t.end_decay} over {t.anneal_steps}" if t.anneal_steps else f"{t.end_decay}"
        out.append((name, n, schedule, init_share(t.decay, t.end_decay, t.anneal_steps, n // 2),
                    init_share(t.decay, t.end_decay, t.anneal_steps, n)))
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print("| preset | train.max_steps | EMA decay | init left at mid-run | init left at the end |")
    print("|---|---|---|---|---|")
    for name, n, schedule, mid, end in rows():
        print(f"| {name} | {n:,} | {schedule} | {mid:.2g} | {end:.2g} |")


if __name__ == "__main__":
    main()
