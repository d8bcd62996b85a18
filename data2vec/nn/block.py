"""Transformer block with a post-LN (data2vec 2.0) or pre-LN (BEiT) layout."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from data2vec.nn.attention import Attention


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, activation_dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(activation_dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class Block(nn.Module):
    """One Transformer block.

    Returns the block output and the FFN output before the last residual add and norm,
    which is the data2vec target tensor (fairseq's `layer_result`).

    post-LN (norm_first=False): x = norm1(x + attn(x)); y = norm2(x + mlp(x))
    pre-LN  (norm_first=True):  x = x + g1*attn(norm1(x)); y = x + g2*mlp(norm2(x))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        norm_first: bool = False,
        layer_scale_init: float = 0.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), activation_dropout)
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)
        if layer_scale_init > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), layer_scale_init))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layer_scale_init))
        else:
            self.gamma_1 = self.gamma_2 = None

    def _scale(self, x: Tensor, gamma: Optional[Tensor]) -> Tensor:
        return x if gamma is None else x * gamma

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, D). Returns (block output, FFN output), both (B, T, D)."""
        if self.norm_first:
            x = x + self.drop_path(self._scale(self.dropout(self.attn(self.norm1(x), attn_mask)), self.gamma_1))
            ffn = self.mlp(self.norm2(x))
            x = x + self.drop_path(self._scale(self.dropout(ffn), self.gamma_2))
            return x, ffn
        x = self.norm1(x + self.drop_path(self._scale(self.dropout(self.attn(x, attn_mask)), self.gamma_1)))
        ffn = self.mlp(x)
        x = self.norm2(x + self.drop_path(self._scale(self.dropout(ffn), self.gamma_2)))
        return x, ffn
