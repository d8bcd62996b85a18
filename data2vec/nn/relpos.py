"""BEiT relative position bias (data2vec 1.0 vision: one table shared by all layers)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def num_relative_distance(grid_h: int, grid_w: int) -> int:
    """Table rows: every 2-D patch displacement plus cls->patch, patch->cls and cls->cls."""
    return (2 * grid_h - 1) * (2 * grid_w - 1) + 3


def relative_position_index(grid_h: int, grid_w: int) -> Tensor:
    """Index into the bias table for every (query, key) pair, BEiT's layout exactly.

    Token 0 is the CLS token, tokens 1..N the patches in row-major order (N = grid_h * grid_w).
    Patches i=(yi, xi), j=(yj, xj) get (yi - yj + grid_h - 1) * (2 * grid_w - 1) + (xi - xj + grid_w - 1);
    with R = num_relative_distance: row 0 (cls->patch) R - 3, column 0 (patch->cls) R - 2,
    and [0, 0] R - 1.

    Returns: (N + 1, N + 1) long.
    """
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)  # (N,)
    dy = ys[:, None] - ys[None, :] + grid_h - 1  # (N, N), in [0, 2 * grid_h - 2]
    dx = xs[:, None] - xs[None, :] + grid_w - 1
    r = num_relative_distance(grid_h, grid_w)
    n = grid_h * grid_w
    index = torch.empty(n + 1, n + 1, dtype=torch.long)
    index[1:, 1:] = dy * (2 * grid_w - 1) + dx
    # Same fill order as BEiT: row, then column, then the corner overrides both.
    index[0, :] = r - 3
    index[:, 0] = r - 2
    index[0, 0] = r - 1
    return index


class RelativePositionBias(nn.Module):
    """Learned per-head bias for every token pair, looked up by 2-D displacement (BEiT)."""

    def __init__(self, grid: tuple[int, int], num_heads: int) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_heads = num_heads
        # Zero init as BEiT: attention starts position-agnostic and learns the bias.
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_relative_distance(*grid), num_heads))
        # Derived from `grid`, so it is rebuilt rather than stored in checkpoints.
        self.register_buffer("relative_position_index", relative_position_index(*grid), persistent=False)

    def forward(self) -> Tensor:
        """Returns the additive attention bias (1, num_heads, N + 1, N + 1)."""
        n1 = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]  # (n1 * n1, H)
        return bias.reshape(n1, n1, self.num_heads).permute(2, 0, 1).unsqueeze(0)
