"""Learning-rate schedules (pure functions of the step)."""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, base_lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Linear warm-up from 0 over `warmup` steps, then cosine decay to `min_lr` at `total`."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    if total <= warmup:
        return base_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def linear_warmup_decay(step: int, base_lr: float, warmup: int, total: int) -> float:
    """fairseq `polynomial_decay` with power 1: linear warm-up, then linear decay to 0 at `total`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return base_lr * max(0.0, (total - step) / max(1, total - warmup))


def tri_stage(step: int, base_lr: float, warmup: int, hold: int, total: int, final_lr: float,
              init_scale: float = 0.01) -> float:
    """fairseq `tri_stage`: linear warm-up from init_scale*lr over `warmup` steps, hold for
    `hold` steps, then exponential decay to `final_lr` (> 0) at `total`."""
    if step < warmup:
        return base_lr * (init_scale + (1 - init_scale) * step / warmup)
    if step < warmup + hold:
        return base_lr
    progress = min(1.0, (step - warmup - hold) / max(1, total - warmup - hold))
    return base_lr * math.exp(math.log(final_lr / base_lr) * progress)


SCHEDULES = ("cosine", "tri_stage")


def learning_rate(step: int, lr: float, min_lr: float, schedule: str, warmup: int, hold: int, total: int) -> float:
    """The pretraining lr at `step` for `train.schedule` (cosine: decays to min_lr)."""
    if schedule == "cosine":
        return cosine_with_warmup(step, lr, warmup, total, min_lr)
    if schedule == "tri_stage":
        if min_lr <= 0:
            raise ValueError("train.schedule=tri_stage decays exponentially to train.min_lr, which must be > 0")
        return tri_stage(step, lr, warmup, hold, total, min_lr)
    raise ValueError(f"train.schedule={schedule!r}; expected one of {SCHEDULES}")
