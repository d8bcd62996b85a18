"""How much of a model's targets is a function of where a token sits in its sequence.

A data2vec student regresses the teacher's top-K representation at masked positions. If those
targets become a function of the token's position alone (its distance to the start and the end
of the sequence), the student can predict them from the edges it sees, without the content: the
regression loss falls while the features stop carrying content. On short utterances a
positional conv stack wide enough to see both ends of every utterance makes that shortcut
available (docs/benchmarks-payoff.md, section 5.4). `benchmarks/target_position.py` measures it
for a checkpoint.
"""

from __future__ import annotations

import torch
from torch import Tensor


def position_features(length: int, edge: int = 24) -> Tensor:
    """(T, 2 (edge + 1) + 10): one-hot distance to the start and to the end (each capped at
    `edge` tokens) and the relative position in tenths."""
    if length < 1 or edge < 0:
        raise ValueError(f"need length >= 1 and edge >= 0, got length={length}, edge={edge}")
    t = torch.arange(length)
    f = torch.zeros(length, 2 * (edge + 1) + 10)
    f[t, t.clamp_max(edge)] = 1
    f[t, edge + 1 + (length - 1 - t).clamp_max(edge)] = 1
    f[t, 2 * (edge + 1) + (10 * t) // length] = 1
    return f


def explained_share(targets: list[Tensor], features: list[Tensor], train_frac: float = 0.8) -> float:
    """Held-out R^2 of a least-squares fit from `features` to `targets`, per sequence lists of
    (T_i, F) and (T_i, D): fitted on the first `train_frac` of the sequences, scored on the rest
    (1 = the targets are a function of the features, 0 = no better than their mean)."""
    if len(targets) != len(features):
        raise ValueError(f"{len(targets)} target sequences but {len(features)} feature sequences")
    n = int(len(targets) * train_frac)
    if not 0 < n < len(targets):
        raise ValueError(f"need sequences to fit and to score: {len(targets)} sequences, train_frac={train_frac}")

    def design(xs: list[Tensor]) -> Tensor:
        x = torch.cat(xs).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    w = torch.linalg.lstsq(design(features[:n]), torch.cat(targets[:n]).double()).solution
    y = torch.cat(targets[n:]).double()
    residual = ((y - design(features[n:]) @ w) ** 2).sum()
    return float(1 - residual / ((y - y.mean(0)) ** 2).sum())


def position_share(targets: list[Tensor], edge: int = 24, train_frac: float = 0.8) -> float:
    """The share of the variance of per-sequence targets [(T_i, D)] explained by position."""
    return explained_share(targets, [position_features(len(t), edge) for t in targets], train_frac)
