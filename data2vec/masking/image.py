"""Image masks: data2vec 2.0 inverse block masking (fairseq `compute_block_mask_2d`) and
data2vec 1.0 BEiT block-wise masking (BEiT `MaskingGenerator`)."""

from __future__ import annotations

import math

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


def _place_rectangle(
    mask: Tensor,
    max_mask_patches: int,
    min_num_patches: int,
    log_aspect: tuple[float, float],
    generator: torch.Generator | None,
) -> int:
    """Try up to 10 times to mask one rectangle in `mask` (grid_h, grid_w), in place.

    Returns how many patches were newly masked (0 if every attempt was rejected).
    """
    grid_h, grid_w = mask.shape
    for _ in range(10):
        # One draw per attempt: target area, log-aspect, top, left (BEiT's four `random` calls).
        u_area, u_aspect, u_top, u_left = torch.rand(4, generator=generator).tolist()
        # As Python's random.uniform(a, b): also valid when b < a (fewer patches left than the minimum).
        area = min_num_patches + (max_mask_patches - min_num_patches) * u_area
        aspect = math.exp(log_aspect[0] + (log_aspect[1] - log_aspect[0]) * u_aspect)
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if w >= grid_w or h >= grid_h:
            continue
        top = int(u_top * (grid_h - h + 1))  # randint(0, grid_h - h), inclusive
        left = int(u_left * (grid_w - w + 1))
        window = mask[top : top + h, left : left + w]
        delta = h * w - int(window.sum())
        if 0 < delta <= max_mask_patches:
            window.fill_(True)
            return delta
    return 0


def beit_block_mask(
    batch: int,
    grid_h: int,
    grid_w: int,
    num_masking_patches: int,
    min_num_patches: int = 16,
    max_num_patches: int | None = None,
    min_aspect: float = 0.3,
    max_aspect: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """BEiT block-wise mask (data2vec 1.0 vision: 14x14 grid, 120 patches, min 16, aspect 0.3).

    Rectangles of random area in [min_num_patches, patches still to mask] and log-uniform
    aspect ratio are added until `num_masking_patches` are masked or a rectangle cannot be
    placed in 10 attempts, so a row masks at most (and usually exactly) that many patches.
    Rows differ in count, unlike data2vec 2.0 masks: the student keeps every patch.

    Returns: (batch, grid_h * grid_w) bool in row-major patch order, True = masked.
    """
    num_patches = grid_h * grid_w
    if not 0 <= num_masking_patches <= num_patches:
        raise ValueError(f"num_masking_patches must be in [0, {num_patches}], got {num_masking_patches}")
    if min_num_patches > num_masking_patches:
        raise ValueError(
            f"min_num_patches ({min_num_patches}) must not exceed num_masking_patches ({num_masking_patches})"
        )
    if min_aspect <= 0 or (max_aspect is not None and max_aspect <= 0):
        raise ValueError(f"aspect ratios must be positive, got {min_aspect}, {max_aspect}")
    max_aspect = max_aspect or 1.0 / min_aspect
    log_aspect = (math.log(min_aspect), math.log(max_aspect))
    max_num_patches = num_patches if max_num_patches is None else max_num_patches
    masks = torch.zeros(batch, grid_h, grid_w, dtype=torch.bool)
    for row in masks:
        count = 0
        while count < num_masking_patches:
            limit = min(num_masking_patches - count, max_num_patches)
            delta = _place_rectangle(row, limit, min_num_patches, log_aspect, generator)
            if delta == 0:
                break
            count += delta
    return masks.view(batch, num_patches)
