"""Fixed positional encodings."""

from __future__ import annotations

import torch
from torch import Tensor


def _sincos_1d(dim: int, pos: Tensor) -> Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim/2,)
    out = pos.reshape(-1).double()[:, None] * omega[None]  # (N, dim/2)
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_1d(dim: int, length: int) -> Tensor:
    """1-D sin-cos table: (length, dim) float32, half sines and half cosines of the position."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even width, got {dim}")
    return _sincos_1d(dim, torch.arange(length)).float()


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """MAE-style 2-D sin-cos table: (grid_h * grid_w, dim), rows in row-major patch order.

    Half the channels encode the row, half the column, as in MAE's `get_2d_sincos_pos_embed`.
    """
    if dim % 4:
        raise ValueError(f"sin-cos positions need a width divisible by 4, got {dim}")
    gy, gx = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    # MAE uses w as the first coordinate (np.meshgrid(grid_w, grid_h)): keep its layout.
    emb = torch.cat([_sincos_1d(dim // 2, gx), _sincos_1d(dim // 2, gy)], dim=1)
    return emb.float()
