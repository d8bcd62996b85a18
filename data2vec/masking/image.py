"""Image masks: data2vec 2.0 inverse block masking (fairseq `compute_block_mask_2d`)."""

from __future__ import annotations

import torch
from torch import Tensor

from data2vec.masking.common import exact_count


def inverse_block_mask(
    batch: int,
    grid: int,
    mask_prob: float,
    mask_prob_adjust: float = 0.0,
    block: int = 3,
    inverse: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Block mask on a grid x grid patch layout, exactly int(L * p) set per sample.

    With `inverse`, the blocks mark the *visible* patches (keep prob = 1 - mask_prob) and
    the result is inverted, so the student sees a few contiguous blobs (reference 2.4).

    Returns: (batch, grid * grid) bool, True = masked.
    """
    L = grid * grid
    p = 1.0 - mask_prob if inverse else mask_prob
    n_centres = int(L * ((p + mask_prob_adjust) / block**2))
    centres = torch.randint(0, L, (batch, n_centres), generator=generator)  # with replacement
    cy, cx = centres // grid, centres % grid  # (B, n)
    offs = torch.arange(block) - block // 2
    # Every centre sets the block around it; indices are clamped at the borders.
    ys = (cy[:, :, None, None] + offs[None, None, :, None]).clamp(0, grid - 1)
    xs = (cx[:, :, None, None] + offs[None, None, None, :]).clamp(0, grid - 1)
    flat = (ys * grid + xs).reshape(batch, -1)
    mask = torch.zeros(batch, L, dtype=torch.bool)
    if flat.numel():
        mask.scatter_(1, flat, True)
    mask = exact_count(mask, int(L * p), generator)
    return ~mask if inverse else mask
