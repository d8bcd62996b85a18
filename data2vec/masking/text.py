"""Text masks: data2vec 2.0 uniform random token masking (fairseq `random_masking`, length 1)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def num_masked(mask_prob: float, padding_mask: Optional[Tensor], length: int) -> int:
    """How many tokens every row masks: int(mask_prob * shortest real length in the batch).

    Dropping masked tokens needs the same count in every row, and padding is never masked,
    so the shortest row sets the count: it gets exactly `mask_prob`, longer rows a little
    less. With `break_mode=none` blocks are full and every row gets `mask_prob` (512 tokens
    at 0.48 -> 245 masked, as fairseq's int(T * (1 - p)) = 266 kept).
    """
    shortest = length
    if padding_mask is not None and padding_mask.shape[0] > 0:
        shortest = int((~padding_mask).sum(1).min())
    return int(mask_prob * shortest)


def random_token_mask(
    batch: int,
    length: int,
    mask_prob: float,
    padding_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Mask a uniform random subset of each row's real tokens, the same count in every row.

    Args:
        padding_mask: (batch, length) bool, True = padding; padding is never masked.
        generator: CPU generator (masks are reproducible per seed, step and micro-batch).
    Returns:
        (batch, length) bool, True = masked, `num_masked(...)` set per row.
    """
    if not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}")
    n = num_masked(mask_prob, padding_mask, length)
    scores = torch.rand(batch, length, generator=generator)
    if padding_mask is not None:
        # Padding scores below every real token's, so top-k never picks it (n <= real length).
        scores = scores.masked_fill(padding_mask.cpu(), -1.0)
    top = scores.topk(n, dim=1).indices
    return torch.zeros(batch, length, dtype=torch.bool).scatter_(1, top, True)
