"""The light convolutional decoder of data2vec 2.0 (fairseq `Decoder1d` / `Decoder2d`)."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from data2vec.config import DecoderConfig
from data2vec.masking.common import MaskInfo, restore_tokens


def decoder_input(x: Tensor, info: MaskInfo, noise_std: float, dropout: float, training: bool) -> Tensor:
    """Student outputs at visible slots, N(0, noise_std) noise at masked ones, original order.

    Args:
        x: (B, T_keep, D) student outputs of the visible tokens (extra tokens removed).
    Returns:
        (B, T, D)
    """
    x = F.dropout(x, dropout, training=training)
    B, _, D = x.shape
    noise = x.new_empty(B, info.mask.shape[1] - info.num_keep, D).normal_(0, noise_std)
    return restore_tokens(x, noise, info)


def projection(dim: int, out_dim: int, layers: int = 1, ratio: float = 2.0) -> nn.Module:
    """Linear (layers=1) or Linear(dim, ratio*dim)-GELU-...-Linear(., out_dim): the decoder's
    output projection and data2vec 1.0's regression head (fairseq `final_proj` /
    `regression_head`, whose Sequential indices 0 and 2 this layout keeps)."""
    if layers < 1:
        raise ValueError(f"model.decoder.projection_layers={layers}; need at least 1")
    mods: list[nn.Module] = []
    cur = dim
    for i in range(layers - 1):
        nxt = int(cur * ratio) if i == 0 else cur
        mods += [nn.Linear(cur, nxt), nn.GELU()]
        cur = nxt
    mods.append(nn.Linear(cur, out_dim))
    return mods[0] if len(mods) == 1 else nn.Sequential(*mods)


class _ChannelLayerNorm(nn.Module):
    """Parameter-free LayerNorm over the channel axis of a (B, C, ...) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.movedim(1, -1), (x.shape[1],)).movedim(-1, 1)


class ConvDecoder(nn.Module):
    """Stacked grouped convs (conv -> LN without affine -> GELU) with residuals, then a projection.

    `dims=1` convolves along the sequence (audio, text); `dims=2` reshapes the sequence to
    its `grid` (H, W) first (images).
    """

    def __init__(self, cfg: DecoderConfig, input_dim: int, dims: int = 1, grid: Optional[tuple[int, int]] = None):
        super().__init__()
        if dims == 2 and grid is None:
            raise ValueError("a 2-D decoder needs the patch grid size")
        self.dims, self.grid, self.residual = dims, grid, cfg.residual
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv(input_dim if i == 0 else cfg.dim, cfg.dim, cfg.kernel, padding=cfg.kernel // 2, groups=cfg.groups),
                _ChannelLayerNorm(),
                nn.GELU(),
            )
            for i in range(cfg.layers)
        )
        self.proj = projection(cfg.dim, input_dim, cfg.projection_layers, cfg.projection_ratio)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) with T = H*W for 2-D. Returns (B, T, D)."""
        B, T, D = x.shape
        h = x.transpose(1, 2)  # (B, D, T)
        if self.dims == 2:
            h = h.reshape(B, D, *self.grid)
        residual = h
        for blk in self.blocks:
            h = blk(h)
            # Even kernels would grow the length by one; trim like fairseq's SamePad.
            if h.shape[2:] != residual.shape[2:]:
                h = h[(...,) + tuple(slice(0, s) for s in residual.shape[2:])]
            if self.residual and h.shape == residual.shape:
                h = h + residual
            residual = h
        h = h.reshape(B, h.shape[1], T).transpose(1, 2)
        return self.proj(h)
